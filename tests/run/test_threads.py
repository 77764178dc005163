"""torch's threads per trial process (aebench.threads): a number as given, "auto" the cores that no
other process runs on, when the run starts and again before every epoch; recorded in each row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import build_suite, build_tiny_suite, entry

from aebench.cli import main
from aebench.run import threads as aebench_threads
from aebench.run.threads import busy_elsewhere, choose_threads, own_running


@pytest.mark.parametrize(
    ("setting", "cores", "busy", "threads"),
    [
        ("auto", 2, 0, 2),  # an idle machine: every core
        ("auto", 2, 1, 1),  # one core busy elsewhere: the other one
        ("auto", 2, 5, 1),  # all busy: still one
        ("auto", 16, 3, 13),
        (3, 2, 0, 3),  # a number is taken as it is
    ],
)
def test_threads_are_the_free_cores_or_the_number_given(
    setting, cores, busy, threads, monkeypatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(setting, cores=cores, busy=busy) == threads


def test_auto_keeps_the_environments_choice(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads("auto", cores=16, busy=0) == 3
    assert choose_threads(2, cores=16, busy=0) == 2  # the suite's number wins over it


@pytest.mark.parametrize(
    ("loadavg", "busy"),
    [("0.5 0.4 0.3 1/80 123\n", 0), ("1.9 1.2 0.7 3/95 456\n", 2), ("garbled", 0)],
)
def test_other_processes_runnable_now_are_read_from_loadavg(tmp_path, loadavg, busy) -> None:
    path = tmp_path / "loadavg"
    path.write_text(loadavg)
    no_tasks = tmp_path / "no-tasks"  # this process's threads unknown: only the asking one
    assert busy_elsewhere(path, no_tasks) == busy
    assert busy_elsewhere(tmp_path / "absent", no_tasks) == 0


def fake_tasks(folder: Path, states: list[str]) -> Path:
    """A /proc/self/task of threads in these states (stat: pid (name with ) in it) state ...)."""
    for n, state in enumerate(states):
        (folder / str(n)).mkdir(parents=True)
        (folder / str(n) / "stat").write_text(f"{n} (python (x)) {state} 1 2 3\n")
    return folder


def test_this_processes_own_spinning_threads_are_not_another_process(tmp_path) -> None:
    tasks = fake_tasks(tmp_path / "task", ["R", "S", "R", "S"])
    assert own_running(tasks) == 2
    assert own_running(tmp_path / "absent") == 1
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.0 1.0 1.0 3/95 456\n")
    assert busy_elsewhere(loadavg, tasks) == 1  # 3 runnable, 2 of them ours


def test_auto_threads_follow_the_load_before_every_epoch(monkeypatch, torch_threads_restored):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(aebench_threads, "available_cores", lambda: 2)
    load = {"busy": 0}
    monkeypatch.setattr(aebench_threads, "busy_elsewhere", lambda: load["busy"])
    assert aebench_threads.follow("auto") == 2 and torch.get_num_threads() == 2
    load["busy"] = 1  # another process started
    aebench_threads.adjust()
    assert torch.get_num_threads() == 1
    load["busy"] = 0
    aebench_threads.adjust()
    assert torch.get_num_threads() == 2
    aebench_threads.follow(1)  # a number is kept whatever the load
    aebench_threads.adjust()
    assert torch.get_num_threads() == 1


def test_the_training_loop_adjusts_the_threads_before_every_epoch(monkeypatch, plugins) -> None:
    """(Where the number comes from is the test above.)"""
    from aebench.run import train
    from aebench.run.sections import TrainSection
    from aebench_plugins.datasets.digits import digits

    calls = []
    monkeypatch.setattr(train, "adjust_threads", lambda: calls.append(1))
    data = digits()
    entry = plugins.models.get("ae")
    model = entry.factory(data.info, **entry.params.model_validate({"hidden": [8]}).model_dump())
    regularizer = plugins.regularizers.get("none").factory()
    generator = torch.Generator().manual_seed(0)
    settings = TrainSection(epochs=3, batch_size=256, lr=1e-3)
    train.train_model(model, regularizer, data, settings, generator=generator)
    assert len(calls) == 3


@pytest.fixture
def torch_threads_restored():
    """A run sets torch's threads for its whole process: the tests after this one keep theirs."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_suite_and_the_command_line_set_the_threads_recorded_in_each_row(
    write_suite, tmp_path: Path, monkeypatch, torch_threads_restored
) -> None:
    monkeypatch.chdir(tmp_path)
    suite = write_suite(build_tiny_suite(threads=1, metrics=["recon_mse"]))
    assert main(["run", str(suite), "--output", "one"]) == 0
    assert set(pd.read_parquet(tmp_path / "one" / "results.parquet")["threads"]) == {1}
    assert main(["run", str(suite), "--output", "two", "--threads", "2"]) == 0
    assert set(pd.read_parquet(tmp_path / "two" / "results.parquet")["threads"]) == {2}


def test_a_bad_thread_count_is_one_line(tiny_suite, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["run", str(tiny_suite), "--threads", "0"])
    assert exit.value.code == 2
    assert "'0': a number of threads (1 or more) or auto" in capsys.readouterr().err


def test_measuring_adjusts_the_threads_before_the_encoding_and_every_metric(
    monkeypatch, write_suite, tmp_path, torch_threads_restored
) -> None:
    """The last epoch's choice is not the measuring's: a worker busy then may be idle now."""
    from aebench.run import measure

    calls = []
    monkeypatch.setattr(measure, "adjust_threads", lambda: calls.append(1))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    suite = write_suite(
        build_suite(
            entry("ae", hidden=[8], latent_dim=2),
            name="measured",
            seeds=[0],
            epochs=1,
            batch_size=256,
            metrics=["recon_mse", "n_params", "knn_acc"],
        )
    )
    assert main(["run", str(suite), "--output", str(tmp_path / "out")]) == 0
    assert len(calls) == 1 + 3


@pytest.mark.parametrize("estimate", ["importance_sampling", "prior_mc_estimate"])
def test_a_long_likelihood_estimate_adjusts_the_threads_as_it_goes(
    estimate, monkeypatch, plugins, torch_threads_restored
) -> None:
    """``aebench evaluate`` chose one thread as a dSprites likelihood started (the run's MLflow
    worker was importing mlflow) and kept it for the whole 57 s; on two it took 34 s."""
    from aebench.estimators import likelihood
    from aebench_plugins.datasets.digits import digits

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(aebench_threads, "available_cores", lambda: 2)
    load = {"busy": 1}  # the worker, busy as the estimate starts
    monkeypatch.setattr(aebench_threads, "busy_elsewhere", lambda: load["busy"])
    monkeypatch.setattr(aebench_threads, "ESTIMATE_EVERY_S", 0.0)
    assert aebench_threads.follow("auto") == 1
    seen: list[int] = []

    data = digits()
    entry = plugins.models.get("vae")
    params = entry.params.model_validate({"hidden": [8], "latent_dim": 2}).model_dump()
    model = entry.factory(data.info, **params).eval()
    decode = model.likelihood

    def watched(z):  # the decoder's threads, chunk after chunk
        seen.append(torch.get_num_threads())
        load["busy"] = 0  # then idle
        return decode(z)

    model.likelihood = watched
    with torch.no_grad():
        getattr(likelihood, estimate)(model, data.test.x[:20], 64, max_elements=20 * 64 * 16)
    assert seen[0] == 1 and seen[-1] == 2 and len(seen) > 2


def test_between_a_long_estimates_chunks_the_load_is_read_at_most_every_so_often(
    monkeypatch, torch_threads_restored
) -> None:
    from aebench.estimators.pacing import between_chunks

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(aebench_threads, "available_cores", lambda: 2)
    reads = []
    monkeypatch.setattr(aebench_threads, "busy_elsewhere", lambda: reads.append(1) or 0)
    monkeypatch.setattr(aebench_threads, "ESTIMATE_EVERY_S", 3600.0)
    aebench_threads.follow("auto")
    for _ in range(100):
        between_chunks()
    assert len(reads) == 2  # the follow's, the first chunk's; none after, within the hour
    aebench_threads.follow(2)  # a number: nothing to choose again
    between_chunks()
    assert len(reads) == 2

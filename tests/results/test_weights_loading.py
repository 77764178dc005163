"""A ``model.pt`` that is a pickle with a payload (issue 32): never run, and said in one line that
names the file, with none of torch's advice to load it with ``weights_only=False``."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from aebench.results.trials import WEIGHTS, TrialFileError, read_weights
from aebench.results.weights import WeightsError, load_weights
from aebench.run.checkpoint import Checkpoints


class Payload:
    """Unpickled, it would write a marker file: the code a crafted ``model.pt`` asks to run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def crafted(marker: Path) -> bytes:
    """What ``torch.save`` writes for a state_dict holding the payload."""
    buffer = io.BytesIO()
    torch.save({"encoder.weight": torch.zeros(2), "evil": Payload(marker)}, buffer)
    return buffer.getvalue()


def assert_refused_in_one_line(message: str, name: str, marker: Path) -> None:
    [line] = message.splitlines()
    assert line.startswith(f"{name}: not a plain weights file"), line
    assert "it was not loaded" in line
    assert "weights_only" not in line and "False" not in line
    assert not marker.exists()  # the payload never ran


def test_a_kept_model_with_a_payload_is_one_line_naming_the_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / WEIGHTS).write_bytes(crafted(marker))
    with pytest.raises(TrialFileError) as refused:
        read_weights(tmp_path)
    assert_refused_in_one_line(str(refused.value), str(tmp_path / WEIGHTS), marker)


def test_weights_sent_back_with_a_payload_are_refused_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(WeightsError) as refused:
        load_weights(crafted(marker), "cpu")
    assert_refused_in_one_line(str(refused.value), "the weights sent back", marker)


def test_a_plain_pickle_is_refused_and_a_truncated_file_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="not a plain weights file; it was not loaded"):
        load_weights(tmp_path / "plain.pt")
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    (tmp_path / "cut.pt").write_bytes(buffer.getvalue()[:50])
    with pytest.raises(WeightsError) as refused:
        load_weights(tmp_path / "cut.pt")
    [line] = str(refused.value).splitlines()
    assert line.startswith(f"{tmp_path / 'cut.pt'}: unreadable weights: "), line


def test_plain_weights_load_as_saved(tmp_path: Path) -> None:
    torch.save({"w": torch.arange(3.0)}, tmp_path / "ok.pt")
    assert torch.equal(load_weights(tmp_path / "ok.pt")["w"], torch.arange(3.0))


def test_a_checkpoint_with_a_payload_is_ignored_in_one_line(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(crafted(marker))
    assert Checkpoints(path, "0123456789abcdef").load() is None
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "checkpoint ignored" in line and "weights_only" not in line
    assert not marker.exists()

"""What a search did, for a person: ``search.md`` beside the results table, with each
configuration's optimisation history and parameter importances (Optuna's fANOVA) as figures in
``search-figures/``, drawn with matplotlib from the studies in ``search.db``.

Its headline says the budget every configuration was tuned with ("tuned with 20 trials each on
validation"); a configuration whose search got a different budget (a grid smaller than it, a
search stopped early), or whose best value of a parameter lies on an edge of its range, is
flagged, since its comparison with the others is not even.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from aebench.results.confined import SEARCH_FIGURES, confined, safe_name
from aebench.results.files import write_atomically
from aebench.run.search import DATABASE, counted, storage_url
from aebench.run.search_section import SearchSection
from aebench.run.search_space import Dimension
from aebench.views.drawing import _figure, _save
from aebench.views.layout import SEARCH_REPORT

SEARCH_MD = SEARCH_REPORT
FIGURES = SEARCH_FIGURES


@dataclass
class StudyView:
    """One configuration's study, as the report shows it."""

    name: str
    direction: str
    trials: list[FrozenTrial]  # those counted against the budget
    best: FrozenTrial | None

    @property
    def spent_s(self) -> float:
        return sum(t.user_attrs.get("spent_s", 0.0) for t in self.trials)


def read_studies(output: Path) -> list[StudyView]:
    """Every study in the folder's ``search.db``, oldest first (none without the file)."""
    if not (Path(output) / DATABASE).is_file():
        return []
    storage = storage_url(output)
    views = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = counted(study)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = study.best_trial if complete else None
        views.append(StudyView(summary.study_name, study.direction.name.lower(), trials, best))
    return views


def headline(section: SearchSection) -> str:
    """``Tuned with 20 trials each on validation`` (or seconds of training each)."""
    if section.budget_s is not None:
        budget = f"{section.budget_s:g} s of training"
    else:
        budget = f"{section.budget_trials} trials"
    return (
        f"Tuned with {budget} each on validation ({section.sampler} sampler, seed"
        f" {section.seed}, pruner {section.pruner}), objective {section.objective}"
    )


def write_search_report(
    output: Path,
    section: SearchSection,
    untuned: Sequence[str] = (),
    searched: Sequence[str] | None = None,
) -> Path | None:
    """``search.md`` and its figures, for a folder whose suite searched; its path (None when
    the folder holds no search). ``untuned``: the configurations with nothing to search
    (``digits/ae/none``), flagged: they got no budget at all. ``searched``: the studies of this
    run (by name), where the folder's ``search.db`` holds others too (the suite's search, or a
    space, changed since: another study, not this run's); None: every one."""
    studies = [s for s in read_studies(output) if searched is None or s.name in searched]
    if not studies and not untuned:
        return None
    lines = [f"# {headline(section)}", ""]
    budget = section.budget_trials
    lines += [
        "| configuration | trials | seconds | best value | best parameters | flag |",
        "|---|---|---|---|---|---|",
    ]
    sections: list[str] = []
    for label in untuned:
        lines.append(f"| {label} | 0 | 0.0 | none |  | different budget: nothing searched |")
    for study in studies:
        flags = [] if study.best is None else on_edges(study.best)
        if budget is not None and len(study.trials) != budget:
            flags.insert(0, f"different budget: {len(study.trials)} trials, not {budget}")
        elif section.budget_s is not None and study.spent_s < section.budget_s:
            flags.insert(0, f"different budget: {study.spent_s:.1f} s, not {section.budget_s:g}")
        flag = "; ".join(flags)
        best = study.best
        value = f"{best.value:.6g}" if best is not None and best.value is not None else "none"
        params = ", ".join(f"{k} = {v}" for k, v in best.params.items()) if best else ""
        label = study.name.rsplit("/", 1)[0]
        lines.append(
            f"| {label} | {len(study.trials)} | {study.spent_s:.1f} | {value} | {params} | {flag} |"
        )
        slug = safe_name(study.name)  # a configuration's label, made a file name
        # Each path checked as it is written: a real folder, not a link to elsewhere.
        history = confined(Path(output), FIGURES, f"{slug}-history.png")
        draw_history(study, history)
        sections += [f"## {label}", "", f"![history]({FIGURES}/{history.name})", ""]
        importance = confined(Path(output), FIGURES, f"{slug}-importance.png")
        if draw_importance(output, study, importance):
            sections += [f"![importance]({FIGURES}/{importance.name})", ""]
    text = "\n".join([*lines, "", *sections])
    path = Path(output) / SEARCH_MD
    write_atomically(path, lambda p: p.write_text(text))
    return path


def on_edges(best: FrozenTrial) -> list[str]:
    """``train.lr at the top of its range [0.0003, 0.01]`` for each best value on an edge of its
    space: tuned no further than the range let it go (a wider one might do better), so its
    comparison with the others is not even."""
    flags = []
    for name, value in best.params.items():
        if edge := Dimension(best.distributions[name]).on_edge(value):
            flags.append(f"{name} = {value} {edge}")
    return flags


def draw_history(study: StudyView, path: Path) -> None:
    """Each trial's objective (pruned and failed ones marked at the bottom) and the best so far."""
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot()
    done = [(t.number, t.value) for t in study.trials if t.state == TrialState.COMPLETE]
    if done:
        numbers, values = zip(*done, strict=True)
        ax.plot(numbers, values, "o", color="tab:blue", label="trial")
        better = max if study.direction == "maximize" else min
        best, running = [], math.nan
        for value in values:
            running = value if math.isnan(running) else better(running, value)  # type: ignore[arg-type]
            best.append(running)
        ax.step(numbers, best, where="post", color="tab:orange", label="best so far")
        floor = min(values)
        for state, marker in ((TrialState.PRUNED, "v"), (TrialState.FAIL, "x")):
            others = [t.number for t in study.trials if t.state == state]
            if others:
                ax.plot(
                    others, [floor] * len(others), marker, color="grey", label=state.name.lower()
                )
        ax.legend(fontsize="small")
    ax.set_xlabel("search trial")
    ax.set_ylabel("objective (validation)")
    ax.set_title(study.name.rsplit("/", 1)[0], fontsize="medium")
    _save(fig, path)


def draw_importance(output: Path, study: StudyView, path: Path) -> bool:
    """Each parameter's fANOVA importance as bars; False when there is too little to tell (fewer
    than two complete trials)."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return False
    loaded = optuna.load_study(study_name=study.name, storage=storage_url(output))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        importances = optuna.importance.get_param_importances(loaded, evaluator=evaluator)
    except (RuntimeError, ValueError):  # one value over all trials: nothing to apportion
        return False
    fig = _figure(5.0, 0.6 + 0.4 * max(1, len(importances)))
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_xlim(0, 1)
    _save(fig, path)
    return True

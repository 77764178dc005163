"""The suite file: its sections as typed settings, and reading a file into them.

``[suite]``, ``[train]`` (its optimizer, schedule, validation, annealing), ``[eval]``,
``[tracking]`` and the plugin entries are one pydantic model each, with their defaults and
bounds, written here once: training reads its ``TrainSection`` whole. A file that does not fit
them is a ``SuiteError``, one line per mistake naming the file and the place; ``suite.py`` then
checks the plugins it names and expands it into trials.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from aebench.results.references import Reference

SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a suite name becomes a folder: no '/', no '..'


class SuiteError(ValueError):
    """A bad suite file. ``str(error)`` is what to show the user: one line per mistake found
    (``error.lines``), each naming the file and the place."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class Problems:
    """The mistakes found in a suite so far, so that all are reported at once, each once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def add(self, place: str, what: str) -> None:
        line = f"{self.path}: {place}: {what}"
        if line not in self.lines:  # a bad value is met again at every grid point it is in
            self.lines.append(line)

    def __bool__(self) -> bool:
        return bool(self.lines)

    def raise_any(self) -> None:
        if self.lines:
            raise SuiteError(*self.lines)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SuiteSection(_Section):
    name: Annotated[str, Field(pattern=SAFE_NAME, max_length=100)]
    # torch's generators take seeds modulo 2^64 and numpy's below 2^32: larger or negative seeds
    # would alias others (0, 2^32 and 2^33 gave identical trials)
    seeds: Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1)] = [0]
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")] = "auto"
    output: str | None = None
    isolate: bool = False  # each trial in its own process: a crash there is a failed trial
    # Seconds a trial may run before it is failed ("timed out after N s") and the suite goes on:
    # checked between training steps and metrics in-process (no limit when unset); an isolated
    # trial's process is killed at it (24 h when unset), a hard limit even inside one C call.
    trial_timeout: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    # torch's threads in the process that trains: a number, or "auto", the cores no other
    # process is running on, chosen again before every epoch (aebench.threads; `--threads`).
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    keep_models: bool = True  # each trial's trained weights in its folder, for later evaluation


class ConstantSchedule(_Section):
    kind: Literal["constant"]


class MultiStepSchedule(_Section):
    """The rate times ``gamma`` after each milestone epoch (``milestones = [1, 4, 13]``)."""

    kind: Literal["multistep"]
    milestones: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
    gamma: Annotated[float, Field(gt=0)] = 0.1


class ExponentialSchedule(_Section):
    """The rate times ``gamma`` after every epoch."""

    kind: Literal["exponential"]
    gamma: Annotated[float, Field(gt=0)]


class CosineSchedule(_Section):
    """A linear warm-up from 0 over ``warmup_epochs``, then a cosine down to ``min_lr``."""

    kind: Literal["cosine"]
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    min_lr: Annotated[float, Field(ge=0)] = 0.0


class PlateauSchedule(_Section):
    """The rate times ``factor`` once the validation loss has not improved for ``patience``
    epochs (the training loss, without a validation split)."""

    kind: Literal["plateau"]
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10
    min_lr: Annotated[float, Field(ge=0)] = 0.0


class AnnealSection(_Section):
    """A linear warm-up of a model's loss weight from 0 to its value, over ``epochs`` or
    ``steps`` (one of the two)."""

    epochs: Annotated[int, Field(ge=1)] | None = None
    steps: Annotated[int, Field(ge=1)] | None = None

    @pydantic.model_validator(mode="after")
    def _one_of_the_two(self) -> AnnealSection:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give either epochs or steps")
        return self


class EarlyStoppingSection(_Section):
    patience: Annotated[int, Field(ge=1)]
    min_delta: Annotated[float, Field(ge=0)] = 0.0


Schedule = Annotated[
    ConstantSchedule | MultiStepSchedule | ExponentialSchedule | CosineSchedule | PlateauSchedule,
    Field(discriminator="kind"),
]


class TrainSection(_Section):
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 128
    lr: Annotated[float, Field(gt=0)] = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    betas: Annotated[  # adam, adamw
        list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = [0.9, 0.999]
    eps: Annotated[float, Field(gt=0)] = 1e-8  # adam, adamw
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    momentum: Annotated[float, Field(ge=0)] = 0.0  # sgd
    nesterov: bool = False  # sgd, with momentum > 0
    clip_norm: Annotated[float, Field(gt=0)] | None = None  # gradients clipped to this norm
    schedule: Schedule = ConstantSchedule(kind="constant")  # the learning rate per epoch
    # Validation: this fraction of the training split held out (0: the dataset's own validation
    # split, if it has one); its loss per epoch is the val_loss curve.
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    early_stopping: EarlyStoppingSection | None = None  # on the validation loss
    restore_best: bool = False  # measure the weights of the best validation epoch
    # Loss weights the model declares annealable (``annealed_weights``), warmed up from 0.
    anneal: dict[str, AnnealSection] = {}
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast the forward pass and losses
    compile: bool = False  # torch.compile the forward pass and losses
    # Save a checkpoint every N epochs (None: about once a minute) to resume a killed trial.
    # It does not change what is trained, so it is not part of the trial's identity.
    checkpoint_every: Annotated[int, Field(ge=1)] | None = None
    # Swept settings: every combination is a training protocol of its own (``lr = [1e-3, 1e-4]``).
    grid: dict[str, list[Any]] = {}


class EvalSection(_Section):
    """``metrics`` to run (None: every registered one); every other key is a metric's table of
    parameters (``[eval.NAME] samples = 5000``) or an alias a metric declares
    (``NAME_samples = 5000``, say). Both are validated against the metrics in ``load_suite``."""

    model_config = ConfigDict(extra="allow", strict=True)
    metrics: list[str] | None = None


class TrackingSection(_Section):
    enabled: bool = True  # record to MLflow
    uri: str | None = None  # MLflow tracking URI; None: $MLFLOW_TRACKING_URI or results/mlflow.db
    log_model: bool = False  # save each trained model's state_dict as an artifact
    experiment: str | None = None  # MLflow experiment; None: the suite's name (and folder)


class PluginEntry(_Section):
    plugin: str
    params: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}


class SuiteFile(_Section):
    suite: SuiteSection
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    tracking: TrackingSection = TrackingSection()
    datasets: Annotated[list[PluginEntry], Field(min_length=1)]
    models: Annotated[list[PluginEntry], Field(min_length=1)]
    # None: the regularizer a plugin declares the default (``Regularizer.default``), which
    # ``load_suite`` writes in here.
    regularizers: Annotated[list[PluginEntry], Field(min_length=1)] | None = None
    # Published values the report sets ours beside (aebench.references): saved with the results.
    references: list[Reference] = []


def place_of(loc: tuple[Any, ...]) -> str:
    """``models[0].params.hidden[1]``: a pydantic error's location as a suite spells it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(error: dict[str, Any]) -> str:
    """What is wrong, in a suite author's words where pydantic's would puzzle."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"]


def from_pydantic(path: Path, exc: pydantic.ValidationError) -> SuiteError:
    """Every mistake pydantic found, one line each."""
    problems = Problems(path)
    for error in exc.errors():
        problems.add(place_of(tuple(error["loc"])), explain(error))
    return SuiteError(*problems.lines)


def grid_place(grid: dict[str, list[Any]], point: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """``grid.p[1] = 2.0``: the grid value a validation error is about, by its index and value;
    a place inside that value (an entry of a list) is added as ``(at [1])``."""
    name = str(loc[0])
    value = point[name]
    index = next(i for i, v in enumerate(grid[name]) if v == value and type(v) is type(value))
    inside = f" (at {place_of(tuple(loc[1:]))})" if len(loc) > 1 else ""
    return f"grid.{name}[{index}] = {json.dumps(value, default=str)}{inside}"


def validate_suite(path: Path, raw: dict[str, Any]) -> SuiteFile:
    """Validate a parsed suite's structure (not yet its plugins); ``path`` names it in errors."""
    try:
        return SuiteFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_pydantic(path, exc) from None


def read_suite_file(path: Path) -> SuiteFile:
    """Parse and validate the file's structure (not yet its plugins)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the suite file: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from None
    return validate_suite(path, raw)

"""The suite file: its sections as typed settings, and reading a file into them.

``[suite]``, ``[train]`` (its optimizer, schedule, validation, annealing), ``[eval]`` and the
plugin entries are one pydantic model each, with their defaults and bounds, written here once:
training reads its ``TrainSection`` whole. A file that does not fit them is a ``SuiteError``, one
line per mistake naming the file and the place; ``suite.py`` then checks the plugins it names and
expands it into trials. The observers' tables (``[observers.NAME]``) are checked here against the
observers' own signatures (``observer_settings``), for ``load_suite`` and ``build_observers`` alike.
"""

from __future__ import annotations

import difflib
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from aebench.plugins.registry import Entry, Registry
from aebench.results.references import Reference
from aebench.results.table import CELL_INT, too_large
from aebench.run.error_places import place_of, user_errors
from aebench.run.search_section import SearchSection
from aebench.run.threads import available_cores

AUTO_COMPILE_STEPS = 200_000  # 2.5x the ~80,000 steps that repay compiling the VAE on a CPU
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a suite name becomes a folder: no '/', no '..'
# Every setting becomes a cell of the results table, whose integers stay below CELL_INT (2^53):
# parquet's stop at 2^63 (one above made every later run into the folder die at start).
Count = Annotated[int, Field(ge=1, lt=CELL_INT)]  # epochs, batch size, patience...
Whole = Annotated[int, Field(ge=0, lt=CELL_INT)]
# A float setting is finite: lr = inf trained, and diverged.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
# A suite nested deeper than this is not a suite: tomllib and pydantic recurse, and a 5,000-deep
# file was a 3,002-line RecursionError. Real suites nest 4 or 5 deep.
MAX_DEPTH = 32


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
    trial_timeout: Positive | None = None
    # torch's threads in the process that trains: a number, or "auto", the cores no other
    # process is running on, chosen again before every epoch (aebench.threads; `--threads`).
    # A number is at most the machine's cores (``load_suite``: libgomp aborts at 10^9).
    threads: Count | Literal["auto"] = "auto"
    keep_models: bool = True  # each trial's trained weights in its folder, for later evaluation


class ConstantSchedule(_Section):
    kind: Literal["constant"]


class MultiStepSchedule(_Section):
    """The rate times ``gamma`` after each milestone epoch (``milestones = [1, 4, 13]``)."""

    kind: Literal["multistep"]
    milestones: Annotated[list[Count], Field(min_length=1)]
    gamma: Positive = 0.1


class ExponentialSchedule(_Section):
    """The rate times ``gamma`` after every epoch."""

    kind: Literal["exponential"]
    gamma: Positive


class CosineSchedule(_Section):
    """A linear warm-up from 0 over ``warmup_epochs``, then a cosine down to ``min_lr``."""

    kind: Literal["cosine"]
    warmup_epochs: Whole = 0
    min_lr: NonNegative = 0.0


class PlateauSchedule(_Section):
    """The rate times ``factor`` once the validation loss has not been lower than its lowest
    for ``patience`` epochs (the training loss, without a validation split)."""

    kind: Literal["plateau"]
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Count = 10
    min_lr: NonNegative = 0.0


class AnnealSection(_Section):
    """A linear warm-up of a model's loss weight from 0 to its value, over ``epochs`` or
    ``steps`` (one of the two)."""

    epochs: Count | None = None
    steps: Count | None = None

    @pydantic.model_validator(mode="after")
    def _one_of_the_two(self) -> AnnealSection:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError("give either epochs or steps")
        return self


class EarlyStoppingSection(_Section):
    patience: Count
    min_delta: NonNegative = 0.0


Schedule = Annotated[
    ConstantSchedule | MultiStepSchedule | ExponentialSchedule | CosineSchedule | PlateauSchedule,
    Field(discriminator="kind"),
]


class TrainSection(_Section):
    epochs: Count = 10
    batch_size: Count = 128
    lr: Positive = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    betas: Annotated[  # adam, adamw
        list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)
    ] = [0.9, 0.999]
    eps: Positive = 1e-8  # adam, adamw
    weight_decay: NonNegative = 0.0
    momentum: NonNegative = 0.0  # sgd
    nesterov: bool = False  # sgd, with momentum > 0
    clip_norm: Positive | None = None  # gradients clipped to this norm
    schedule: Schedule = ConstantSchedule(kind="constant")  # the learning rate per epoch
    # Validation: this fraction of the training split held out (0: the dataset's own validation
    # split, if it has one); its loss per epoch is the val_loss curve.
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    early_stopping: EarlyStoppingSection | None = None  # on the validation loss
    restore_best: bool = False  # measure the weights of the best validation epoch
    # Loss weights the model declares annealable (``annealed_weights``), warmed up from 0.
    anneal: dict[str, AnnealSection] = {}
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast the forward pass and losses
    # torch.compile the forward pass and losses; "auto": for trials of AUTO_COMPILE_STEPS steps
    # or more, which repay its 5-25 s of compiling (issue 33, one CPU thread, Burda's MLPs at
    # batches of 20: 1.10x the steps/s of the VAE, 1.13x the IWAE's, 1.02x the AE's). A trial
    # keeps "auto" as None, so that the results table's train.compile column stays boolean.
    compile: bool | Literal["auto"] | None = False
    # Save a checkpoint every N epochs (None: about once a minute) to resume a killed trial.
    # It does not change what is trained, so it is not part of the trial's identity.
    checkpoint_every: Count | None = None
    # "auto": trials that differ only in their seed train together as one stacked model
    # (aebench.run.stacked), each with its own optimizer state, batches and row; the same
    # distribution of results, not the same numbers as alone. Off (false) by default: a stacked
    # trial's numbers depend on the trials it was grouped with. Not part of the trial's identity.
    # false is kept as "off": one type in the results table's column (parquet needs one).
    stack: Annotated[
        Literal["auto", "off"], pydantic.BeforeValidator(lambda v: "off" if v is False else v)
    ] = "off"
    # Swept settings: every combination is a training protocol of its own (``lr = [1e-3, 1e-4]``).
    grid: dict[str, list[Any]] = {}

    @pydantic.field_serializer("compile")
    def _compile_cell(self, value: bool | str | None) -> bool | None:
        return None if value == "auto" else value  # type: ignore[return-value]

    def compiles(self, n_train: int) -> bool:
        """Whether training runs through torch.compile: ``compile``, "auto" by the step count."""
        if isinstance(self.compile, bool):
            return self.compile
        return self.epochs * -(-n_train // self.batch_size) >= AUTO_COMPILE_STEPS


class EvalSection(_Section):
    """``metrics`` to run (None: the default ones, the cheap metrics and the expensive ones that
    declare a requirement; ``"all"``: every registered one); every other key is a metric's table
    of parameters (``[eval.NAME] samples = 5000``) or an alias a metric declares
    (``NAME_samples = 5000``, say). Both are validated against the metrics in ``load_suite``."""

    model_config = ConfigDict(extra="allow", strict=True)
    metrics: list[str] | Literal["all"] | None = None


class TrackingSection(_Section):
    """The MLflow observer's settings (``[observers.mlflow]``, once ``[tracking]``), as its
    ``MlflowTracker`` reads them; switching it off is the ``enabled`` key every observer has."""

    uri: str | None = None  # MLflow tracking URI; None: $MLFLOW_TRACKING_URI or results/mlflow.db
    log_model: bool = False  # save each trained model's state_dict as an artifact
    experiment: str | None = None  # MLflow experiment; None: the suite's name (and folder)


class PluginEntry(_Section):
    plugin: str
    params: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    # Parameters tuned by the [search] (aebench.run.search_space): name -> space.
    search: dict[str, Any] = {}


class SuiteFile(_Section):
    suite: SuiteSection
    train: TrainSection = TrainSection()
    eval: EvalSection = EvalSection()
    # [observers.NAME]: an observer's settings, checked against its factory's signature, and
    # ``enabled`` (``observer_settings``).
    observers: dict[str, dict[str, Any]] = {}
    tracking: dict[str, Any] | None = None  # deprecated: read as [observers.mlflow]
    datasets: Annotated[list[PluginEntry], Field(min_length=1)]
    models: Annotated[list[PluginEntry], Field(min_length=1)]
    # None: the regularizer a plugin declares the default (``Regularizer.default``), which
    # ``load_suite`` writes in here.
    regularizers: Annotated[list[PluginEntry], Field(min_length=1)] | None = None
    # Published values the report sets ours beside (aebench.references): saved with the results.
    references: list[Reference] = []
    # Every configuration tuned with the same budget, on validation (aebench.run.search).
    search: SearchSection | None = None


def explain(error: dict[str, Any]) -> str:
    """What is wrong, in a suite author's words where pydantic's would puzzle."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return error["msg"]


def from_pydantic(path: Path, exc: pydantic.ValidationError, data: Any) -> SuiteError:
    """Every mistake pydantic found in ``data``, one line each, at its place in the file."""
    problems = Problems(path)
    for error in user_errors(exc, data):
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


def cell_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a cell of the results table (an integer out of ``CELL_INT``'s
    range), or None; lists and tables become JSON text, any size."""
    if too_large(value):
        return f"{value} is too large: a number in the results table is below 2^53"
    return None


def threads_problem(threads: int | str) -> str | None:
    """Why ``threads`` (``[suite] threads``, ``--threads``) cannot run here, or None: more than
    the cores this process may run on (libgomp aborts at 10^9, with no row and no message)."""
    cores = available_cores()
    if isinstance(threads, int) and threads > cores:
        return f"{threads} threads, more than the {cores} cores here: at most {cores}, or auto"
    return None


def check_bounds(spec: SuiteFile, trials: Sequence[Any], problems: Problems) -> None:
    """What the sections' types cannot bound: ``threads`` by this machine (``threads_problem``),
    and each plugin's and metric's parameter as a cell (``cell_problem``; ``[train]``'s are
    bounded by their types). ``trials`` are ``aebench.run.suite.Trial``s, grid points expanded."""
    if why := threads_problem(spec.suite.threads):
        problems.add("suite.threads", why)
    for trial in trials:
        for part in (trial.dataset, trial.model, trial.regularizer):
            for name, value in part.params.items():
                if why := cell_problem(value):
                    problems.add(part.source, f"{part.plugin!r} parameter {name!r}: {why}")
        for metric, params in trial.eval["params"].items():
            for name, value in params.items():
                if why := cell_problem(value):
                    problems.add(f"eval.{metric}.{name}", why)


def depth(value: Any) -> int:
    """How deeply ``value``'s lists and tables nest, counted without recursing."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            inside = item.values() if isinstance(item, dict) else item
            if level <= MAX_DEPTH:  # deeper than that is refused whatever is below
                todo += [(v, level + 1) for v in inside]
    return deepest


def validate_suite(path: Path, raw: dict[str, Any]) -> SuiteFile:
    """Validate a parsed suite's structure (not yet its plugins); ``path`` names it in errors."""
    if depth(raw) > MAX_DEPTH:
        raise SuiteError(f"{path}: nested more than {MAX_DEPTH} lists or tables deep")
    try:
        return SuiteFile.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_pydantic(path, exc, raw) from None


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
    except RecursionError:  # tomllib recurses into every nested list and table
        raise SuiteError(f"{path}: nested more than {MAX_DEPTH} lists or tables deep") from None
    return validate_suite(path, raw)


ENABLED = "enabled"  # the key every observer's table has: false switches it off
LEGACY_TRACKING = "tracking"  # the deprecated [tracking]: MLflow's settings, when it is installed


def observer_tables(spec: SuiteFile) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each observer's table as the suite gives it, with its place there: ``[observers.NAME]``,
    and the deprecated ``[tracking]`` as MLflow's (``observer_settings`` refuses both at once)."""
    tables = {name: (f"observers.{name}", table) for name, table in spec.observers.items()}
    if spec.tracking is not None and "mlflow" not in tables:
        tables["mlflow"] = (LEGACY_TRACKING, spec.tracking)
    return tables


def observer_settings(
    spec: SuiteFile, registry: Registry, problems: Problems
) -> dict[str, dict[str, Any]]:
    """The observers that run with this suite, by name, each with the keyword arguments its
    factory is called with after the suite (its defaults filled in), in registration order.

    An observer's table is validated against its factory's signature (the registry entry's
    ``params``), plus ``enabled`` (a bool, default true) that any observer takes: false switches
    it off. A factory that declares ``enabled_by_default = False`` (a function or class attribute:
    an observer that needs an account, say) runs only where the suite has its table. Mistakes go
    to ``problems`` with their place (``observers.mlflow.uri``). An unknown observer is one too,
    but for a table that switches off one not installed here (a suite shared with machines
    without that plugin; unless the name is near an installed one's: a typo), and for the
    deprecated ``[tracking]`` without MLflow installed (it never asked for MLflow)."""
    if spec.tracking is not None and "mlflow" in spec.observers:
        problems.add(LEGACY_TRACKING, "give [observers.mlflow] alone ([tracking] is deprecated)")
    tables = observer_tables(spec)
    for name, (place, table) in tables.items():
        if name in registry or place == LEGACY_TRACKING:
            continue
        near = difflib.get_close_matches(name, registry.names(), n=1, cutoff=0.5)
        if table.get(ENABLED) is False and not near:
            continue  # nothing to switch off here
        try:
            registry.get(name)
        except LookupError as exc:
            problems.add(place, exc.args[0])
    running: dict[str, dict[str, Any] | None] = {}
    for entry in registry.in_order():
        if entry.name not in tables:
            if getattr(entry.factory, "enabled_by_default", True) is not False:
                running[entry.name] = _settings(entry, f"observers.{entry.name}", {}, problems)
            continue
        place, table = tables[entry.name]
        given = dict(table)
        enabled = given.pop(ENABLED, True)
        if not isinstance(enabled, bool):
            problems.add(f"{place}.{ENABLED}", "Input should be a valid boolean (true or false)")
        settings = _settings(entry, place, given, problems, needed=enabled is not False)
        if enabled is True:
            running[entry.name] = settings
    return {name: kwargs for name, kwargs in running.items() if kwargs is not None}


def _settings(
    entry: Entry, place: str, given: dict[str, Any], problems: Problems, needed: bool = True
) -> dict[str, Any] | None:
    """``given`` validated against the observer's signature; None where it does not fit. A
    switched-off observer (not ``needed``) may leave out what it requires."""
    try:
        return entry.params.model_validate(given).model_dump()
    except pydantic.ValidationError as exc:
        for error in user_errors(exc, given):
            if error["type"] == "missing" and not needed:
                continue
            loc = tuple(error["loc"])
            name = str(loc[0]) if loc else ""
            if error["type"] == "extra_forbidden":
                takes = ", ".join([*entry.params.model_fields, ENABLED])
                what = f"observer {entry.name!r} takes no setting {name!r} (it takes: {takes})"
            else:
                what = explain(error)
            problems.add(f"{place}.{place_of(loc)}" if loc else place, what)
    return None


def warn_deprecated(path: Path, spec: SuiteFile) -> None:
    """One line on stderr for the old ``[tracking]``, read as ``[observers.mlflow]``."""
    if spec.tracking is not None:
        message = f"{path}: [tracking] is deprecated; write [observers.mlflow]"
        print(f"aebench: warning: {message}", file=sys.stderr)

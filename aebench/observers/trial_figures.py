"""A trial's figures, captured from the trained model as it ends (``TrialFigures``, an observer).

``capture`` reduces the model to a few small arrays (latent codes, reconstructions, on image data
traversals of a test input's code, and for latent-variable models prior samples, traversals around
the prior mean and interpolations) saved as ``figures.npz``; the PNGs
are drawn from that file alone by ``aebench.drawing``, whose names this module also offers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aebench.contract.data import Data
from aebench.contract.model import LatentVariableModel
from aebench.estimators.seeding import seeded_on
from aebench.results.files import write_atomically
from aebench.results.trials import trial_folder, writable_trial_folder
from aebench.run.observing import Row, SuiteObserver, TrialOutcome
from aebench.run.suite import Suite, Trial
from aebench.views.drawing import (  # noqa: F401  (offered here too: the figures of a trial, in one place)
    ARRAYS,
    CODE_TRAVERSAL_PNG,
    CURVES_PNG,
    INTERPOLATION_PNG,
    LATENT_PNG,
    LOSS_CURVES,
    RECON_PNG,
    SAMPLES_PNG,
    TRAVERSAL_PNG,
    TRIAL_PNGS,
    complete_trial,
    draw_images,
    loss_lines,
    read_arrays,
    render_trial,
)

MAX_SCATTER_POINTS = 2000  # enough to see the structure; keeps the arrays and PNGs small
N_RECON = 10  # test inputs shown beside their reconstructions
N_SAMPLES = 16  # samples decoded from the prior
N_TRAVERSED = 6  # latent dimensions traversed: the most active ones
TRAVERSAL_SIGMAS = np.linspace(-2.5, 2.5, 9)  # prior standard deviations around its mean
N_CODE_TRAVERSED = 8  # dimensions swept around a test input's code: the most active ones
CODE_TRAVERSAL_STEPS = 9
PRIOR_SWEEP = 3.0  # a latent-variable model's code dimension swept over the prior's mean ± 3σ
N_PAIRS = 3  # interpolations, each between two test inputs (of different classes if labelled)
INTERPOLATION_STEPS = 9
EVAL_BATCH = 1024

# --- capture: model -> small arrays -------------------------------------------------------------


def _encode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.encode(b) for b in x.split(EVAL_BATCH)]).flatten(1)


def _project_2d(codes: np.ndarray) -> tuple[np.ndarray, str]:
    """The codes themselves when 2-D, else their first two principal components."""
    if codes.shape[1] == 2:
        return codes, "z"
    if codes.shape[1] == 1:  # a 1-D code: spread the points vertically by nothing but order
        return np.column_stack([codes[:, 0], np.zeros(len(codes))]), "z"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(codes)
    share = pca.explained_variance_ratio_
    return pca.transform(codes), f"PC ({share[0]:.0%}, {share[1]:.0%} of variance)"


@torch.no_grad()
def capture(
    model: nn.Module | None, data: Data | None, curves: Mapping[str, Sequence[float]], seed: int
) -> dict[str, Any]:
    """The arrays every trial figure is drawn from (curves only when there is no trained model)."""
    arrays: dict[str, Any] = {f"curve_{k}": np.asarray(v, dtype=float) for k, v in curves.items()}
    if model is None or data is None:
        return arrays
    test = data.test
    keep = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    keep = keep[:MAX_SCATTER_POINTS].to(test.x.device)
    codes = _encode(model, test.x[keep]).float().cpu().numpy()
    arrays["latent"], arrays["latent_axes"] = _project_2d(codes)
    arrays["latent_dim"] = codes.shape[1]
    if test.y is not None:
        arrays["labels"] = test.y[keep].cpu().numpy()
    x = test.x[:N_RECON]
    arrays["inputs"] = x.float().cpu().numpy()
    arrays["recons"] = model.decode(model.encode(x)).float().cpu().numpy()
    if len(data.info.shape) == 3:  # images: a sweep of vectors reads as noise
        arrays.update(_code_traversals(model, x[:1], codes, seed))
    if isinstance(model, LatentVariableModel):
        device = test.x.device
        with seeded_on(device, seed):  # (a prior's draws are on the model's device)
            z = model.prior().sample((N_SAMPLES,)).to(device)
        arrays["samples"] = model.decode(z).float().cpu().numpy()
        arrays.update(_traversals(model, codes, seed))
        labels = test.y[: 4 * N_PAIRS].cpu().numpy() if test.y is not None else None
        arrays.update(_interpolations(model, test.x[: 4 * N_PAIRS], labels))
    return arrays


def _prior_moments(
    model: nn.Module, prior: torch.distributions.Distribution, seed: int
) -> tuple[Tensor, Tensor]:
    """The prior's mean and standard deviation; estimated from samples when it has no closed form
    (a flow's, say), drawn on the model's device with the streams restored after."""
    try:
        return prior.mean, prior.stddev
    except NotImplementedError:
        device = next(model.parameters(), torch.empty(0)).device
        with seeded_on(device, seed):
            z = prior.sample((1000,))
        return z.mean(0), z.std(0)


def _traversals(model: nn.Module, codes: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Decodes of the prior mean with one dimension moved over ``TRAVERSAL_SIGMAS`` standard
    deviations, for the ``N_TRAVERSED`` dimensions whose codes vary most on the test inputs (an
    inactive dimension's traversal shows nothing)."""
    mean, std = _prior_moments(model, model.prior(), seed)
    dims = np.sort(np.argsort(-codes.var(axis=0), kind="stable")[:N_TRAVERSED])
    steps = torch.as_tensor(TRAVERSAL_SIGMAS, dtype=mean.dtype, device=mean.device)
    z = mean.expand(len(dims), len(steps), -1).clone()
    for row, dim in enumerate(dims):
        z[row, :, dim] = mean[dim] + steps * std[dim]
    decoded = model.decode(z.flatten(0, 1)).float().cpu().numpy()
    return {
        "traversal": decoded.reshape(len(dims), len(steps), *decoded.shape[1:]),
        "traversal_dims": dims,
        "traversal_sigmas": TRAVERSAL_SIGMAS,
    }


def _usable_prior(model: nn.Module) -> torch.distributions.Distribution | None:
    """The model's ``prior()`` (a latent-variable model's p(z), or a deterministic model's density
    of its codes: an adversarial autoencoder's target, an ex-post fit), or None without one."""
    if not callable(getattr(model, "prior", None)):
        return None
    try:
        return model.prior()
    except RuntimeError:  # an ex-post density that was never fitted
        return None


def _sweep_ranges(model: nn.Module, codes: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """Per code dimension, the (low, high) it is swept between, and how they were chosen: the
    prior's mean ± 3σ where the model has a prior (its codes are drawn from it when sampling),
    else the range its codes take on the test inputs (such a code has no scale of its own)."""
    prior = _usable_prior(model)
    if prior is not None:
        mean, std = _prior_moments(model, prior, seed)
        mean, std = mean.float().cpu().numpy(), std.float().cpu().numpy()
        ranges = np.stack([mean - PRIOR_SWEEP * std, mean + PRIOR_SWEEP * std], axis=1)
        return ranges, f"the prior's mean ± {PRIOR_SWEEP:g}σ"
    return np.stack([codes.min(0), codes.max(0)], axis=1), "its range on the test inputs"


def _code_traversals(
    model: nn.Module, x: Tensor, codes: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """Decodes of the code of the test input ``x`` (1, ...) with one dimension swept at a time,
    the others kept: one row per dimension, for the ``N_CODE_TRAVERSED`` dimensions whose codes
    vary most over the test inputs (Burda et al.'s activity; for a latent-variable model the
    variance of its posterior means), most active first."""
    code = _encode(model, x)[0]
    dims = np.argsort(-codes.var(axis=0), kind="stable")[:N_CODE_TRAVERSED]
    ranges, how = _sweep_ranges(model, codes, seed)
    values = np.stack([np.linspace(*ranges[d], CODE_TRAVERSAL_STEPS) for d in dims])
    z = code.expand(len(dims), CODE_TRAVERSAL_STEPS, -1).clone()
    for row, dim in enumerate(dims):
        z[row, :, dim] = torch.as_tensor(values[row], dtype=z.dtype, device=z.device)
    decoded = model.decode(z.flatten(0, 1)).float().cpu().numpy()
    return {
        "code_traversal": decoded.reshape(len(dims), CODE_TRAVERSAL_STEPS, *decoded.shape[1:]),
        "code_traversal_dims": dims,
        "code_traversal_values": values,
        "code_traversal_input": x.float().cpu().numpy(),
        "code_traversal_range": np.asarray(how),
    }


def _pairs(labels: np.ndarray | None, n: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` pairs of distinct indices below ``n``, of different labels where labelled."""
    free, pairs = list(range(n)), []
    while free and len(pairs) < count:
        a = free.pop(0)
        b = next((b for b in free if labels is None or labels[b] != labels[a]), None)
        if b is not None:
            free.remove(b)
            pairs.append((a, b))
    return pairs


def _interpolations(
    model: nn.Module, x: Tensor, labels: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Per pair of test inputs: the first input, the decodes along the straight line between their
    codes, the second input."""
    pairs = _pairs(labels, len(x), N_PAIRS)
    if not pairs:
        return {}
    a, b = (torch.tensor(side, device=x.device) for side in zip(*pairs, strict=True))
    za, zb = model.encode(x[a]).flatten(1), model.encode(x[b]).flatten(1)
    t = torch.linspace(0, 1, INTERPOLATION_STEPS, device=za.device, dtype=za.dtype)
    z = za[:, None] + t[None, :, None] * (zb - za)[:, None]
    decoded = model.decode(z.flatten(0, 1)).float()
    decoded = decoded.reshape(len(pairs), INTERPOLATION_STEPS, *decoded.shape[1:])
    rows = torch.cat([x[a].float()[:, None], decoded, x[b].float()[:, None]], dim=1)
    return {"interpolation": rows.cpu().numpy()}


def _savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as file:  # a file object: ``np.savez`` would add ``.npz`` to a name
        np.savez_compressed(file, **arrays)


def save_trial_figures(
    folder: Path,
    model: nn.Module | None,
    data: Data | None,
    curves: Mapping[str, Sequence[float]],
    *,
    seed: int = 0,
    title: str = "",
    render: Callable[[Path, str], list[Path]] = render_trial,
) -> list[Path]:
    """Capture a trial's arrays into ``folder`` and draw its PNGs with ``render`` (in a worker,
    for the observer that draws there: ``aebench.views.background``); returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = capture(model, data, curves, seed)
    if not arrays:
        return []
    write_atomically(folder / ARRAYS, lambda p: _savez(p, arrays))
    return [folder / ARRAYS, *render(folder, title)]


def trial_title(trial: Trial) -> str:
    """The trial's label and its model and regularizer parameters, for figure titles."""
    params = {**trial.model.params, **trial.regularizer.params}
    shown = " ".join(f"{k}={v}" for k, v in params.items())
    return f"{trial.label()}\n{shown}" if shown else trial.label()


def configuration_key(trial: Trial) -> str:
    """What a trial's seeds share: its configuration without the seed."""
    config = {k: v for k, v in trial.config().items() if k != "seed"}
    return json.dumps(config, sort_keys=True, default=str)


class TrialFigures(SuiteObserver):
    """Saves each trial's figures under ``<output>/trials/<trial_id>/`` as the trial ends.

    ``per_seed=False`` draws them for one seed of each configuration, the first to finish (a
    configuration whose figures a seed already has in the folder gets none): drawing costs as much
    as a small trial's training, and the report shows one seed's figures per configuration.
    Put it before the MLflow observer in the list: that one logs the folder as the run's artifacts.
    """

    def __init__(self, per_seed: bool = True) -> None:
        self.output = Path(".")
        self.per_seed = per_seed
        self.render: Callable[[Path, str], list[Path]] = render_trial  # PNGs from figures.npz
        self.drawn: set[str] = set()  # configurations with a seed's figures in the folder
        self._siblings: dict[str, list[str]] = {}  # configuration -> its trials' ids

    def suite_started(self, suite: Suite, output: Path, trials: list[Trial]) -> None:
        self.output = Path(output)
        self.drawn, self._siblings = set(), {}
        for trial in suite.trials:
            self._siblings.setdefault(configuration_key(trial), []).append(trial.id)
        running = {trial.id for trial in trials}
        self._complete([trial for trial in suite.trials if trial.id not in running])

    def _complete(self, finished: list[Trial]) -> None:
        """Draw the PNGs a finished trial's arrays call for and its folder lacks: a run killed
        while drawing them left the rest, and the trial, finished, is not run again to draw them."""
        for trial in finished:
            if not (trial_folder(self.output, trial.id) / ARRAYS).is_file():
                continue
            try:
                complete_trial(writable_trial_folder(self.output, trial.id), trial_title(trial))
            except Exception as exc:  # a figure is not worth a run: the rows are written
                print(f"aebench: figures of {trial.label()} failed: {exc}", file=sys.stderr)

    def _has_figures(self, key: str, trial: Trial) -> bool:
        """A seed of the trial's configuration has its figures, in this run or before it."""
        if key in self.drawn:
            return True
        others = (i for i in self._siblings.get(key, []) if i != trial.id)
        return any((trial_folder(self.output, i) / ARRAYS).is_file() for i in others)

    def trial_finished(self, trial: Trial, row: Row, outcome: TrialOutcome) -> None:
        key = configuration_key(trial)
        if not self.per_seed and self._has_figures(key, trial):
            return
        try:
            written = save_trial_figures(
                writable_trial_folder(self.output, trial.id),  # no link along it
                outcome.model,
                outcome.data,
                outcome.curves,
                seed=trial.seed,
                title=trial_title(trial),
                render=self.render,
            )
            if written and outcome.model is not None:  # a trained model's figures, not curves
                self.drawn.add(key)
        except Exception as exc:  # a figure is not worth a trial: the row is already written
            print(f"aebench: figures of {trial.label()} failed: {exc}", file=sys.stderr)

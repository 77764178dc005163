"""Exact log p(x) of a latent-variable model whose latent has one or two dimensions, by cubature.

log p(x) = log of the integral of p(x|z) p(z) over z. The estimators of ``aebench.likelihood``
(IWAE, prior Monte Carlo) sample that integral; in one or two dimensions it can be computed to a
stated accuracy instead, which gives the ground truth that those estimators are judged against.

The method (``exact_log_px``), top to bottom:

1. The region is the box prior.mean +- box * prior.stddev in every dimension: for N(0, I) and
   box = 7, [-7, 7]^d, outside which the prior holds about 1e-12 of its mass per side. The
   assumption: p(x|z) p(z) outside the box is negligible next to p(x). It holds for inputs the
   model could have generated, not for an outlier whose posterior lies beyond the box. As a
   flag, the integral over the cells at the box's edge is added to the reported error: negligible
   where the integrand has decayed there, at least the share that the edge holds where it has not
   (where the box cut the integral off, by an unknown amount more).
2. Adaptive cubature on a tree of axis-aligned cells, each integrated by a tensor-product
   Gauss-Legendre rule of ``order`` points per axis. A cell is split into its 2^d children, and
   |I_cell - sum of I_child| estimates the cell's error (an overestimate of the children's, which
   are finer). The children's sum is accepted when that error is within the cell's share of
   ``tolerance * I_total``, half of it in proportion to the cell's integral and half to its
   volume (``_settle``): the shares add up to 1, so the accepted errors of an input add up to at
   most tolerance * I_total, i.e. about ``tolerance`` nats. Else the children are split in the
   next round.
3. Level 0 is the box cut into ``CELLS_PER_AXIS`` cells per axis, and the first round splits it.
   These cells are the same for every input: the decoder runs once for their points, and log
   p(x|z) of every input is computed from that one output. Later rounds are per input (a cell
   belongs to one input), the cells of all inputs in one batch: no Python loop over inputs.
4. A narrow posterior can fall between the coarse grid's points, so that a cell and its children
   agree on missing it. Where the model's q(z|x) has a mean and standard deviation s, a cell that
   overlaps mean +- 6 s is therefore split until the cells summed have half-widths of at most
   s / 2. This is only a hint: a wrong q costs work, not accuracy, since error-driven refinement
   still finds the true peak wherever the coarse grid sees its slopes.
5. Everything is computed in log space against underflow: cell integrals are held relative to
   M_i, the largest log cell-integral of input i seen so far (sums of w * exp(log f - M_i), in
   float64), and the sums are rescaled whenever a round finds a larger one.
6. Work is bounded: after ``max_rounds`` rounds, or where an input has more than
   ``MAX_CELLS_PER_INPUT`` cells to split, the cells left are accepted as they are, their error
   estimates included, so that the error reported stays honest.

Rounding: a float32 model computes log f only to about 1e-5 nats (measured: up to 7e-5 for an MLP
decoder on 784 binary pixels), and the error estimate of a cell cannot fall below that noise.
The tolerance is therefore never below ``NOISE_EPS`` times the model dtype's epsilon, 1.2e-4 for
float32 (2e-13 for float64): asking a float32 model for less would split cells until the rounds
or ``MAX_CELLS_PER_INPUT`` run out.

Cost: a smooth integrand converges fast (a linear-Gaussian model: about 2e4 points per input
at the default tolerance). A ReLU decoder makes log f kinked along many lines, where a cell's
error falls only 4-fold per split: a 2-128-256-64 MLP decoder trained on 8x8 digits took about
1.3e5 points per input in float32, and its reported errors (5e-5) were about 10 times the
actual ones (4e-6, against a float64 dense grid).

Memory: a round holds a few float64 numbers per cell; points are evaluated in chunks of about
``max_elements`` numbers (points x data dimensions) each, like ``aebench.likelihood``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from aebench.contract.model import LatentVariableModel
from aebench.estimators.likelihood import DEFAULT_MAX_ELEMENTS

MAX_LATENT_DIMS = 2  # a split costs 2^d * order^d points: 100 in 2-D, 1,000 in 3-D
CELLS_PER_AXIS = 8  # level 0: for N(0, I) and box = 7, cells 1.75 wide
HINT_WIDTH = 6.0  # forced refinement covers q's mean +- 6 standard deviations ...
HINT_RESOLUTION = 0.5  # ... until the cells summed there are at most 0.5 std in half-width
NOISE_EPS = 1000.0  # a cell may always err by 1000 eps of the model's dtype, relative
MAX_CELLS_PER_INPUT = 2048  # more cells to split in one round: accept them, errors reported
_ENCODER_BATCH = 1024  # inputs per posterior(x) call when reading the hints


@dataclass(frozen=True)
class Quadrature:
    """log p(x) per input by cubature, with the estimated absolute error of each, in nats."""

    log_px: Tensor  # (N,) float64, log p(x) = log of the integral of p(x|z) p(z) dz, per input
    error: Tensor  # (N,) float64, the estimated absolute quadrature error of log_px, in nats


def exact_log_px(
    model: LatentVariableModel,
    x: Tensor,
    *,
    tolerance: float = 1e-6,
    order: int = 5,
    box: float = 7.0,
    max_rounds: int = 30,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Quadrature:
    """log p(x) of every input of ``x`` (N, *data) by adaptive cubature over a latent of d <= 2.

    ``tolerance``: the target relative error of p(x), about the error of log p(x) in nats (for a
    float32 model at least 1.2e-4, its rounding noise). The reported error includes the share of
    p(x) in the cells at the box's edge, which flags inputs whose integral the box cut off.
    ``order``: Gauss-Legendre points per axis of a cell. ``box``: the half-width of the region,
    in prior standard deviations. ``max_rounds``: the most splits, after which the cells left are
    accepted and their errors reported. Raises ``ValueError`` with a one-line reason where the
    method does not apply (a latent of more than 2 dimensions, a prior without mean and standard
    deviation). The module's docstring describes the method and its assumption.
    """
    if not tolerance > 0 or order < 1 or not box > 0 or max_rounds < 1 or max_elements < 1:
        raise ValueError(
            "exact_log_px needs tolerance > 0, order >= 1, box > 0, max_rounds >= 1 and "
            f"max_elements >= 1, not {tolerance}, {order}, {box}, {max_rounds}, {max_elements}"
        )
    with torch.no_grad():
        prior = model.prior()
        box_center, box_half = _box(prior, box)
        rule = _Rule.gauss_legendre(order, len(box_center), x.device)
        integrand = _Integrand(model, prior, x, max_elements)
        hint_mean, hint_std = _posterior_hints(model, x, len(box_center))
        noise = NOISE_EPS * torch.finfo(integrand.dtype).eps
        settings = _Settings(
            tolerance=max(tolerance, noise),  # no finer than the model's rounding noise
            box_center=box_center,
            box_half=box_half,
            hint_mean=hint_mean,
            hint_std=hint_std,
            noise=noise,
        )
        totals, cells, integrals = _first_round(integrand, rule, settings, last=max_rounds == 1)
        for round_ in range(2, max_rounds + 1):
            if len(cells) == 0:
                break
            children = cells.split()
            child_log_integrals = _log_integrals(integrand, rule, children)
            cells, integrals = _settle(
                totals,
                settings,
                cells,
                integrals,
                children,
                child_log_integrals.view(len(cells), -1),
                last=round_ == max_rounds,
            )
    return Quadrature(
        log_px=totals.log_ref + totals.accepted.log(),
        error=(totals.error + totals.edge) / totals.accepted,
    )


@dataclass(frozen=True)
class _Cells:
    """Axis-aligned cells of the integration tree, each integrating one input's integrand."""

    owner: Tensor  # (K,) int64: the index of the input the cell belongs to
    center: Tensor  # (K, d) float64
    half: Tensor  # (K, d) float64: half-widths

    def __len__(self) -> int:
        return len(self.owner)

    def split(self) -> _Cells:
        """The 2^d children of every cell; cell k's are rows k * 2^d to k * 2^d + 2^d - 1."""
        d = self.center.shape[1]
        grids = torch.meshgrid(*[torch.tensor([-1.0, 1.0], dtype=torch.float64)] * d, indexing="ij")
        corners = torch.stack([g.reshape(-1) for g in grids], -1).to(self.center.device)
        quarter = (self.half / 2).unsqueeze(1)  # (K, 1, d): the children's half-widths
        center = (self.center.unsqueeze(1) + corners * quarter).reshape(-1, d)
        half = quarter.expand(-1, len(corners), -1).reshape(-1, d)
        return _Cells(self.owner.repeat_interleave(len(corners)), center, half)

    def select(self, keep: Tensor | slice) -> _Cells:
        return _Cells(self.owner[keep], self.center[keep], self.half[keep])


@dataclass(frozen=True)
class _Rule:
    """A tensor-product Gauss-Legendre rule on [-1, 1]^d: nodes (R, d) and log weights (R,)."""

    nodes: Tensor
    log_weights: Tensor  # Gauss-Legendre weights are positive, so their logs exist

    @classmethod
    def gauss_legendre(cls, order: int, d: int, device: torch.device) -> _Rule:
        t, w = (torch.as_tensor(a, device=device) for a in np.polynomial.legendre.leggauss(order))
        nodes = torch.stack([g.reshape(-1) for g in torch.meshgrid(*[t] * d, indexing="ij")], -1)
        weights = torch.meshgrid(*[w] * d, indexing="ij")
        return cls(nodes, sum(g.log().reshape(-1) for g in weights))

    def points(self, cells: _Cells) -> Tensor:
        """The rule's points in every cell: (K, R, d)."""
        return cells.center.unsqueeze(1) + cells.half.unsqueeze(1) * self.nodes

    def log_integrals(self, cells: _Cells, log_f: Tensor) -> Tensor:
        """log of each cell's integral, from log f at its points (..., K, R): (..., K)."""
        log_sum = torch.logsumexp(log_f.double() + self.log_weights, dim=-1)
        return log_sum + cells.half.log().sum(-1)  # the cell's volume over [-1, 1]^d's


class _Integrand:
    """log f(z) = log p(x|z) + log p(z) of the inputs ``x``, evaluated in bounded chunks."""

    def __init__(
        self, model: LatentVariableModel, prior: Distribution, x: Tensor, max_elements: int
    ) -> None:
        self.model, self.prior, self.x = model, prior, x
        self.data_dims = max(1, math.prod(x.shape[1:]))
        self.max_elements = max_elements
        self.points_per_chunk = max(1, max_elements // self.data_dims)
        self.dtype = prior.mean.dtype  # codes go in with the dtype of the model's own codes

    def paired(self, owner: Tensor, z: Tensor) -> Tensor:
        """log f of input ``owner[k]`` at ``z[k]`` (float64 (P, d)): (P,)."""
        z = z.to(self.dtype)
        parts = []
        for o, zc in zip(
            owner.split(self.points_per_chunk), z.split(self.points_per_chunk), strict=True
        ):
            log_lik = self.model.likelihood(zc).log_prob(self.x[o])
            parts.append(log_lik + self.prior.log_prob(zc))
        return torch.cat(parts)

    def shared(self, z: Tensor) -> Iterator[tuple[slice, Tensor]]:
        """log f of every input at every point of ``z`` (float64 (P, d)), by batches of inputs:
        (the batch's slice of the inputs, (n, P)). The decoder runs once per point."""
        z = z.to(self.dtype)
        decoded = [
            (self.model.likelihood(zc), self.prior.log_prob(zc))
            for zc in z.split(self.points_per_chunk)
        ]
        widest = min(len(z), self.points_per_chunk)
        batch = max(1, self.max_elements // (widest * self.data_dims))
        for start in range(0, len(self.x), batch):
            xb = self.x[start : start + batch].unsqueeze(1)  # (n, 1, *data) against (p,)
            log_f = torch.cat([lik.log_prob(xb) + log_prior for lik, log_prior in decoded], 1)
            yield slice(start, start + len(xb)), log_f


@dataclass(frozen=True)
class _Settings:
    """What decides whether a cell is accepted; fixed for one call."""

    tolerance: float
    box_center: Tensor  # (d,)
    box_half: Tensor  # (d,) the box's half-widths
    hint_mean: Tensor | None  # (N, d) q's mean per input, or None without hints
    hint_std: Tensor | None  # (N, d)
    noise: float  # the relative error a cell may always have: NOISE_EPS * eps of the model


@dataclass
class _Totals:
    """Per input: the reference M_i, and the accepted integral and error relative to it."""

    log_ref: Tensor  # (N,) M_i: the largest log cell-integral seen so far
    accepted: Tensor  # (N,) sum of accepted integrals / exp(M_i)
    error: Tensor  # (N,) sum of accepted errors / exp(M_i)
    edge: Tensor  # (N,) sum of the accepted integrals of cells at the box's edge / exp(M_i)

    def rebase(self, owner: Tensor, log_integrals: Tensor) -> Tensor:
        """Raise M_i to the largest of new log integrals (..., one row per entry of ``owner``)
        and rescale the sums. Returns each input's factor exp(M_old - M_new), for the integrals
        that the caller holds."""
        new = self.log_ref.scatter_reduce(0, owner, log_integrals.amax(-1), "amax")
        # Where M_old is -inf, everything seen so far was exactly 0: any factor will do.
        factor = torch.where(torch.isfinite(self.log_ref), (self.log_ref - new).exp(), 0.0)
        self.log_ref = new
        self.accepted, self.error, self.edge = (t * factor for t in self.accepted_sums())
        return factor

    def accepted_sums(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.accepted, self.error, self.edge

    def relative(self, owner: Tensor, log_integrals: Tensor) -> Tensor:
        """exp(log I - M_owner) of log integrals (K, ...) whose rows belong to ``owner`` (K,)."""
        ref = torch.where(torch.isfinite(self.log_ref), self.log_ref, 0.0)[owner]
        return (log_integrals - ref.view(-1, *[1] * (log_integrals.dim() - 1))).exp()


def _box(prior: Distribution, box: float) -> tuple[Tensor, Tensor]:
    """The box's center and half-widths (d,), float64; ValueError where there is none."""
    if len(prior.event_shape) != 1:
        raise ValueError(
            f"the prior's event shape is {tuple(prior.event_shape)}, not (latent,) as the "
            "LatentVariableModel contract asks"
        )
    d = prior.event_shape[0]
    if d > MAX_LATENT_DIMS:
        raise ValueError(
            f"the latent has {d} dimensions; exact quadrature is done for at most {MAX_LATENT_DIMS}"
        )
    try:
        mean, std = prior.mean.double().reshape(d), prior.stddev.double().reshape(d)
    except NotImplementedError:
        raise ValueError(
            "the prior has no mean and standard deviation to place the quadrature box"
        ) from None
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise ValueError(
            "the prior's mean and standard deviation are not finite and positive, so they "
            "cannot place the quadrature box"
        )
    return mean, box * std


def _posterior_hints(
    model: LatentVariableModel, x: Tensor, d: int
) -> tuple[Tensor | None, Tensor | None]:
    """q(z|x)'s mean and standard deviation per input (N, d), float64, or (None, None) where q
    has none. Non-finite hints force nothing (comparisons with NaN are false)."""
    means, stds = [], []
    try:
        for xb in x.split(_ENCODER_BATCH):
            q = model.posterior(xb)
            means.append(q.mean.double().reshape(len(xb), d))
            stds.append(q.stddev.double().reshape(len(xb), d))
    except NotImplementedError:
        return None, None
    return torch.cat(means), torch.cat(stds)


def _first_round(
    integrand: _Integrand, rule: _Rule, settings: _Settings, last: bool
) -> tuple[_Totals, _Cells, Tensor]:
    """Level 0 and its children, the same cells for every input, then the first acceptance.

    Returns the totals and the cells left to split, with their integrals (relative to M_i).
    """
    n, device = len(integrand.x), integrand.x.device
    grid = _grid(settings.box_center, settings.box_half, CELLS_PER_AXIS)
    children = grid.split()
    z = torch.cat([rule.points(grid), rule.points(children)]).reshape(-1, grid.center.shape[1])
    log_i0 = torch.empty(n, len(grid), dtype=torch.float64, device=device)
    log_i1 = torch.empty(n, len(children), dtype=torch.float64, device=device)
    for rows, log_f in integrand.shared(z):
        log_f = log_f.view(len(log_f), -1, len(rule.nodes))  # (n, cells, R)
        log_i0[rows] = rule.log_integrals(grid, log_f[:, : len(grid)])
        log_i1[rows] = rule.log_integrals(children, log_f[:, len(grid) :])

    zeros = torch.zeros(n, dtype=torch.float64, device=device)
    totals = _Totals(
        log_ref=log_i0.amax(1), accepted=zeros, error=zeros.clone(), edge=zeros.clone()
    )
    owner = torch.arange(n, device=device).repeat_interleave(len(grid))
    parents = _Cells(owner, grid.center.repeat(n, 1), grid.half.repeat(n, 1))
    cells, integrals = _settle(
        totals,
        settings,
        parents,
        totals.relative(owner, log_i0.reshape(-1)),
        parents.split(),
        log_i1.view(len(parents), -1),
        last=last,
    )
    return totals, cells, integrals


def _grid(center: Tensor, half: Tensor, per_axis: int) -> _Cells:
    """The box center +- half cut into ``per_axis`` cells per axis (owned by input 0)."""
    steps = (torch.arange(per_axis, dtype=torch.float64, device=center.device) + 0.5) / per_axis
    axes = [lo + 2 * h * steps for lo, h in zip(center - half, half, strict=True)]
    centers = torch.stack([g.reshape(-1) for g in torch.meshgrid(*axes, indexing="ij")], -1)
    owner = torch.zeros(len(centers), dtype=torch.int64, device=center.device)
    return _Cells(owner, centers, (half / per_axis).expand_as(centers).clone())


def _log_integrals(integrand: _Integrand, rule: _Rule, cells: _Cells) -> Tensor:
    """Each cell's log integral (K,), its points evaluated in chunks."""
    per_chunk = max(1, integrand.points_per_chunk // len(rule.nodes))
    parts = []
    for start in range(0, len(cells), per_chunk):
        chunk = cells.select(slice(start, start + per_chunk))
        z = rule.points(chunk).reshape(-1, chunk.center.shape[1])
        log_f = integrand.paired(chunk.owner.repeat_interleave(len(rule.nodes)), z)
        parts.append(rule.log_integrals(chunk, log_f.view(len(chunk), -1)))
    return torch.cat(parts)


def _settle(
    totals: _Totals,
    settings: _Settings,
    parents: _Cells,
    parent_integrals: Tensor,
    children: _Cells,
    child_log_integrals: Tensor,
    last: bool,
) -> tuple[_Cells, Tensor]:
    """Accept or split every parent, given its children's log integrals (K, 2^d).

    An accepted parent adds its children's sum, and |I_parent - sum I_child| as its error, to the
    totals. The children of the others are returned, with their integrals, as the next round's
    cells. ``last``: accept every parent (no round follows).
    """
    owner = parents.owner
    parent_integrals = parent_integrals * totals.rebase(owner, child_log_integrals)[owner]
    child_integrals = totals.relative(owner, child_log_integrals)
    child_sums = child_integrals.sum(-1)
    error = (parent_integrals - child_sums).abs()

    # A cell's share of the error budget tolerance * I_total: half in proportion to its
    # integral, half to its volume. Volume alone would demand of the cells on a narrow peak a
    # relative accuracy of tolerance * volume share (1e-11 at s = 0.05): more rounds for
    # nothing. Integral alone would demand it of the tails, whose estimate is noise.
    estimate = totals.accepted.index_add(0, owner, child_sums)  # the best I_total so far
    volume_share = (parents.half / settings.box_half).prod(-1)
    budget = settings.tolerance / 2 * (child_sums + estimate[owner] * volume_share)
    budget = torch.maximum(budget, settings.noise * child_sums)
    accept = (error <= budget) & ~_near_posterior(parents, settings)
    crowded = torch.bincount(owner, minlength=len(totals.log_ref)) > MAX_CELLS_PER_INPUT
    accept = accept | crowded[owner] | last

    totals.accepted = totals.accepted.index_add(0, owner[accept], child_sums[accept])
    totals.error = totals.error.index_add(0, owner[accept], error[accept])
    edge = accept & _at_edge(parents, settings)
    totals.edge = totals.edge.index_add(0, owner[edge], child_sums[edge])
    refine = ~accept  # parent k's children are rows k * 2^d ...: repeat the mask 2^d times
    keep = refine.repeat_interleave(child_integrals.shape[-1])
    return children.select(keep), child_integrals[refine].reshape(-1)


def _at_edge(cells: _Cells, settings: _Settings) -> Tensor:
    """Cells (K,) that touch the box's boundary."""
    reach = (cells.center - settings.box_center).abs() + cells.half
    return (reach >= settings.box_half * (1 - 1e-9)).any(-1)


def _near_posterior(cells: _Cells, settings: _Settings) -> Tensor:
    """Cells (K,) that overlap q's mean +- HINT_WIDTH s and whose children would be wider than
    HINT_RESOLUTION s in some dimension: they are split whatever their error estimate."""
    if settings.hint_mean is None or settings.hint_std is None:
        return torch.zeros(len(cells), dtype=torch.bool, device=cells.owner.device)
    mean, std = settings.hint_mean[cells.owner], settings.hint_std[cells.owner]
    overlaps = ((cells.center - mean).abs() <= cells.half + HINT_WIDTH * std).all(-1)
    too_wide = (cells.half / 2 > HINT_RESOLUTION * std).any(-1)
    return overlaps & too_wide

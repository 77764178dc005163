"""The likelihoods p(x|z) that a model can put on its decoder's output.

Each is a normalised density or mass function of the data it is chosen for, so that an ELBO (or
an importance-weighted bound) on it is a bound on a log-likelihood of the data:

- ``bernoulli(logits)``: a mass function on {0, 1}; binary data only (on grey levels the same
  formula is a cross-entropy, not a log-likelihood).
- ``continuous_bernoulli(logits)``: the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), a
  density on [0, 1], for unit data whose values are not quantised. ``ContinuousBernoulli`` is
  torch's, its density, mean, variance, CDF and inverse computed from the logits: torch's
  normaliser uses probabilities clamped to [eps, 1 - eps], so that in float32 its density
  integrates to 0.99 at logit 15 and to 0.27 at logit 60.
- ``DiscretizedLogistic(loc, log_scale, levels)``: a mass function on the grid
  {k / (levels - 1)} (Salimans et al. 2017, PixelCNN++; Kingma et al. 2016, IAF), for quantised
  unit data (8-bit images: 256 levels) and for binary data (2 levels).
- ``gaussian(mean, log_sigma)``: a Gaussian density on the reals, its sigma fixed or learned.

All have batch shape the decoder output's and event shape (); models wrap them in
``Independent``. The Bernoulli and the Gaussian come wrapped already (``IndependentBernoulli``,
``IndependentNormal``): their ``log_prob`` sums over the data's dimensions in one fused
expression, because the importance-weighted evaluation spends most of its time outside the
decoder's matmuls in exactly this sum (torch's Bernoulli.log_prob broadcasts and materialises
the elementwise cross-entropy before ``Independent`` sums it: 1.7x slower, measured).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints
from torch.distributions import ContinuousBernoulli as TorchContinuousBernoulli
from torch.distributions.utils import broadcast_all

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
MIN_LOG_SIGMA = math.log(1e-3)  # a learned sigma may not collapse to 0 (log-density to infinity)

# The discretized logistic's scale may not fall below a thousandth of the grid's spacing: at that
# scale all the mass of a bin already sits in it, and a smaller one only loses float precision.
SCALE_FLOOR = 1e-3

GRID_TOLERANCE = 1e-4  # |x (levels - 1) - k| below which x counts as the grid value k
MEAN_CHUNK = 32  # thresholds evaluated at once by DiscretizedLogistic.mean: memory batch x 32


def min_log_scale(levels: int) -> float:
    """The discretized logistic's floor on log scale: log(SCALE_FLOOR / (levels - 1))."""
    return math.log(SCALE_FLOOR / (levels - 1))


class OnGrid(constraints.Constraint):
    """Values in [0, 1] on the grid {k / (levels - 1)}: the support of a DiscretizedLogistic."""

    is_discrete = True
    event_dim = 0

    def __init__(self, levels: int) -> None:
        self.levels = levels
        super().__init__()

    def check(self, value: Tensor) -> Tensor:
        scaled = value * (self.levels - 1)
        on_grid = (scaled - scaled.round()).abs() < GRID_TOLERANCE
        return (value >= 0) & (value <= 1) & on_grid

    def __repr__(self) -> str:
        return f"{type(self).__name__}(levels={self.levels})"


class DiscretizedLogistic(Distribution):
    """A logistic distribution discretised to the grid {k / (levels - 1)}, k = 0 .. levels - 1.

    Bin k has mass F(x_k + d) - F(x_k - d), d = 1 / (2 (levels - 1)), F the logistic CDF with
    location ``loc`` and scale ``exp(log_scale)``; the first bin also takes all the mass below
    (F(x_0 + d)), the last all the mass above (1 - F(x_last - d)), so the masses sum to 1.
    ``log_scale`` is clamped from below at ``min_log_scale(levels)``.

    ``log_prob`` snaps its argument to the nearest grid value; with ``validate_args`` an
    off-grid value is an error instead.
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    has_enumerate_support = True

    def __init__(
        self,
        loc: Tensor,
        log_scale: Tensor,
        levels: int,
        validate_args: bool | None = None,
    ) -> None:
        if int(levels) != levels or levels < 2:
            raise ValueError(f"DiscretizedLogistic needs levels >= 2, an integer; got {levels}")
        self.levels = int(levels)
        self.loc, log_scale = broadcast_all(loc, log_scale)
        self.log_scale = log_scale.clamp(min=min_log_scale(self.levels))
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def half_bin(self) -> float:
        return 0.5 / (self.levels - 1)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return OnGrid(self.levels)

    def expand(self, batch_shape, _instance=None) -> DiscretizedLogistic:
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        new.levels = self.levels
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        super(DiscretizedLogistic, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        last = self.levels - 1
        k = (value * last).round().clamp(0, last)
        inv_scale = torch.exp(-self.log_scale)
        # The edges x_k +- d as (k +- 1/2) / (levels - 1): bin k's upper edge is bitwise bin
        # k + 1's lower one, so that the masses telescope to 1 even where x - loc rounds.
        upper = ((k + 0.5) / last - self.loc) * inv_scale  # (x + d - loc) / s
        lower = ((k - 0.5) / last - self.loc) * inv_scale  # (x - d - loc) / s
        # log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - exp(b - a)),
        # with b - a = -2d / s exactly
        width = torch.log(-torch.expm1(-2 * self.half_bin * inv_scale))
        interior = F.logsigmoid(upper) + F.logsigmoid(-lower) + width
        below = F.logsigmoid(upper)  # the first bin: F(x_0 + d)
        above = F.logsigmoid(-lower)  # the last bin: 1 - F(x_last - d)
        return torch.where(k == 0, below, torch.where(k == last, above, interior))

    def _upper_tail_sums(self, weighted: bool) -> Tensor:
        """sum_{j=1}^{levels-1} w_j P(K >= j), w_j = 1 (or 2j - 1), chunked over j.

        P(K >= j) = 1 - F(x_j - d) = sigmoid((loc - x_j + d) / s).
        """
        last = self.levels - 1
        inv_scale = torch.exp(-self.log_scale)
        total = torch.zeros_like(self.loc)
        shape = (-1,) + (1,) * self.loc.dim()
        for start in range(1, self.levels, MEAN_CHUNK):
            j = torch.arange(
                start,
                min(start + MEAN_CHUNK, self.levels),
                dtype=self.loc.dtype,
                device=self.loc.device,
            ).view(shape)
            tail = torch.sigmoid((self.loc - (j - 0.5) / last) * inv_scale)
            total = total + (tail * (2 * j - 1) if weighted else tail).sum(0)
        return total

    @property
    def mean(self) -> Tensor:
        """sum_k x_k P_k, exactly: (1 / (levels - 1)) sum_{j>=1} P(K >= j)."""
        return self._upper_tail_sums(weighted=False) / (self.levels - 1)

    @property
    def variance(self) -> Tensor:
        """E[X^2] - E[X]^2 with E[K^2] = sum_{j>=1} (2j - 1) P(K >= j)."""
        last = self.levels - 1
        mean_k = self._upper_tail_sums(weighted=False)
        second = self._upper_tail_sums(weighted=True)
        return (second - mean_k**2).clamp(min=0) / last**2

    def enumerate_support(self, expand: bool = True) -> Tensor:
        values = torch.arange(self.levels, dtype=self.loc.dtype, device=self.loc.device)
        values = (values / (self.levels - 1)).view((-1,) + (1,) * len(self.batch_shape))
        return values.expand((-1, *self.batch_shape)) if expand else values

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """A logistic draw, rounded to the nearest grid value and clipped to [0, 1]."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            tiny = torch.finfo(self.loc.dtype).tiny
            u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device)
            u = u.clamp(tiny, 1 - torch.finfo(self.loc.dtype).eps)
            y = self.loc + self.log_scale.exp() * (torch.log(u) - torch.log1p(-u))
            last = self.levels - 1
            return (y * last).round().clamp(0, last) / last


def _safe(value: Tensor, small: Tensor, fill: float) -> Tensor:
    """``value`` with ``fill`` where ``small``: keeps the unselected branch of a where finite."""
    return torch.where(small, torch.full_like(value, fill), value)


class ContinuousBernoulli(TorchContinuousBernoulli):
    """The continuous Bernoulli p(x) = C(l) sigmoid(l)^x sigmoid(-l)^(1 - x) on [0, 1], l the logit,
    computed from the logit alone: log p(x) = log(|l| / (1 - exp(-|l|))) - max(l, 0) + x l.

    torch's class computes C(l) from probabilities clamped to [eps, 1 - eps] but the rest of
    the density from the logits, which disagree for large logits (float32: at l = 15 the density
    integrates to 0.99). Here the density, mean, variance, entropy, CDF and inverse CDF (and so
    ``rsample``) all use the logits, with series near l = 0.
    """

    def _log_norm_abs(self) -> Tensor:
        """log(a / (1 - exp(-a))), a = |l|: a / 2 - a^2 / 24 near 0."""
        a = self.logits.abs()
        small = a < 1e-2
        safe = _safe(a, small, 1.0)
        direct = torch.log(safe) - torch.log(-torch.expm1(-safe))
        return torch.where(small, a / 2 - a**2 / 24, direct)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        return self._log_norm_abs() - logits.clamp(min=0) + value * logits

    @property
    def mean(self) -> Tensor:
        """1 / (1 - exp(-l)) - 1 / l; 1/2 + l/12 - l^3/720 near 0."""
        logits = self.logits
        small = logits.abs() < 0.1
        safe = _safe(logits, small, 1.0)
        direct = 1 / (-torch.expm1(-safe)) - 1 / safe
        return torch.where(small, 0.5 + logits / 12 - logits**3 / 720, direct)

    @property
    def variance(self) -> Tensor:
        """1 / l^2 - 1 / (4 sinh^2(l / 2)); 1/12 - l^2/240 + l^4/6048 - l^6/172800 near 0."""
        logits = self.logits
        small = logits.abs() < 1.0
        safe = _safe(logits, small, 1.0)
        direct = 1 / safe**2 - 1 / (4 * torch.sinh(safe / 2) ** 2)
        l2 = logits**2
        series = 1 / 12 - l2 / 240 + l2**2 / 6048 - l2**3 / 172800
        return torch.where(small, series, direct)

    def entropy(self) -> Tensor:
        return self.logits.clamp(min=0) - self._log_norm_abs() - self.logits * self.mean

    def cdf(self, value: Tensor) -> Tensor:
        """(exp(l x) - 1) / (exp(l) - 1), written without overflow for either sign of l."""
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        small = logits.abs() < 1e-4
        safe = _safe(logits, small, 1.0)
        # below l = 1 as written; above, divided through by exp(l) (each branch kept finite)
        low, high = _safe(safe, safe > 1, 1.0), _safe(safe, safe <= 1, 2.0)
        below = torch.expm1(low * value) / torch.expm1(low)
        above = torch.exp(high * (value - 1)) * torch.expm1(-high * value) / torch.expm1(-high)
        direct = torch.where(safe > 1, above, below)
        series = value + logits * value * (value - 1) / 2
        return torch.where(small, series, direct).clamp(0, 1)

    def icdf(self, value: Tensor) -> Tensor:
        """The x with cdf(x) = value: log1p(value (exp(l) - 1)) / l, without overflow."""
        logits = self.logits
        small = logits.abs() < 1e-4
        safe = _safe(logits, small, 1.0)
        low, high = _safe(safe, safe > 1, 1.0), _safe(safe, safe <= 1, 2.0)
        below = torch.log1p(value * torch.expm1(low)) / low
        above = 1 + torch.log(value + (1 - value) * torch.exp(-high)) / high
        direct = torch.where(safe > 1, above, below)
        series = value - logits * value * (value - 1) / 2
        return torch.where(small, series, direct).clamp(0, 1)


# -- the others, as the models build them ---------------------------------------------------------


def _full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 where it is half or bfloat16 (autocast's output): a sum over 784 pixels
    in bfloat16 would keep 3 significant digits of a log-likelihood."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def bernoulli_log_mass(logits: Tensor, value: Tensor, event_dims: int) -> Tensor:
    """sum over the last ``event_dims`` dimensions of log Bernoulli(value; sigmoid(logits)).

    log p(x) = x l - log(1 + e^l) = x l - softplus(l): softplus(l) with x l taken off in place,
    then summed (one temporary, three passes; 6% faster than a dot product and a separate sum,
    which would also cancel: sum softplus(l) and sum x l are both near sum max(l, 0));
    ``value`` broadcasts against ``logits`` (one image scored by many codes). On grey levels
    x in (0, 1) this is the negative cross-entropy. On the CPU, where values and logits have one
    shape, softplus(l) is log(1 + exp(l)) (``_bernoulli_log_mass_no_grad``), with its own
    gradient where one is asked for (``_BernoulliLogMass``).
    """
    logits = _full_precision(logits)
    flat_logits = logits.flatten(-event_dims) if event_dims else logits.unsqueeze(-1)
    flat_value = value.flatten(-event_dims) if event_dims else value.unsqueeze(-1)
    flat_value = flat_value.to(logits.dtype)
    in_place = _broadcasts_to(flat_value.shape, flat_logits.shape)
    # under vmap or torch.func.grad, torch's softplus: the overflow check is data-dependent
    transformed = torch._C._are_functorch_transforms_active()
    if in_place and flat_logits.device.type == "cpu" and not transformed:
        values = flat_value.expand_as(flat_logits)
        if not torch.is_grad_enabled() or not (flat_logits.requires_grad or values.requires_grad):
            return _bernoulli_log_mass_no_grad(flat_logits, values)
        return _BernoulliLogMass.apply(flat_logits, values)
    terms = F.softplus(flat_logits)
    if in_place and not transformed:  # vmap has no batching rule for addcmul_: a loop
        terms.addcmul_(flat_value, flat_logits, value=-1)  # in place: one temporary
    else:  # or values with more leading dimensions than the logits (many inputs, one code)
        terms = torch.addcmul(terms, flat_value, flat_logits, value=-1)
    return -terms.sum(-1)


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a tensor of ``shape`` broadcasts against one of ``target`` to ``target``'s shape
    (``torch.broadcast_shapes(shape, target) == target``, which is Python through torch._refs:
    33 us a call, 1.6% of a Burda VAE training step)."""
    pairs = zip(reversed(shape), reversed(target), strict=False)
    return len(shape) <= len(target) and all(size in (1, goal) for size, goal in pairs)


def _bernoulli_log_mass_no_grad(logits: Tensor, value: Tensor) -> Tensor:
    """``bernoulli_log_mass`` of flat (..., D) logits and values of the same shape, with
    softplus(l) = log(1 + exp(l)): F.softplus's value to within 7e-8 a logit (1 + exp(l) rounds
    to 1 below l = -17, leaving out at most 3e-8 a logit: 2.4e-5 nats on a 784-pixel image whose
    every logit is that low), until exp(l) overflows (l > 88.7 in float32). The rows where it
    did are infinite and computed again with F.softplus (saturated decoders only).
    """
    terms = torch.exp(logits)
    terms.add_(1.0).log_()
    terms.addcmul_(value, logits, value=-1)
    log_mass = terms.sum(-1).neg_()
    overflowed = torch.isinf(log_mass)
    if overflowed.any():
        rows = logits[overflowed]
        exact = F.softplus(rows).addcmul_(value[overflowed], rows, value=-1)
        log_mass[overflowed] = exact.sum(-1).neg_()
    return log_mass


class _BernoulliLogMass(torch.autograd.Function):
    """``_bernoulli_log_mass_no_grad`` with its gradient: d/dl = x - sigmoid(l), d/dx = l.

    Why not F.softplus and its autograd: on the CPU torch's softplus kernel and its backward are
    slower than exp, plus one, log and a sigmoid, by 1.5-2x on one machine (1.9-2.0 ns a logit
    against 1.0-1.3, one thread) and 5x on another (AVX-512, where softplus runs log1p scalar:
    softplus 1.2 ms and its backward 0.7 ms on 8 stacked Burda VAE batches, 160 x 784 logits,
    a fifth of the stacked training step; exp, + 1, log 0.24 ms and sigmoid 0.05 ms); on a GPU
    all are bound by memory, and the overflow check would wait for the device."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, value: Tensor) -> Tensor:
        ctx.save_for_backward(logits, value)
        return _bernoulli_log_mass_no_grad(logits, value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        logits, value = ctx.saved_tensors
        per_logit = grad.unsqueeze(-1)
        grad_logits = grad_value = None
        if ctx.needs_input_grad[0]:
            if torch.is_grad_enabled():  # a graph of the backward pass: nothing in place
                grad_logits = (value - torch.sigmoid(logits)) * per_logit
            else:  # in place on the one temporary: x - sigmoid(l) = -(sigmoid(l) - x)
                grad_logits = torch.sigmoid(logits).sub_(value).mul_(per_logit.neg())
        if ctx.needs_input_grad[1]:
            grad_value = logits * per_logit
        return grad_logits, grad_value


class IndependentBernoulli(Independent):
    """Bernoulli(sigmoid(logits)) independently over the last ``event_dims`` dimensions, its
    ``log_prob`` fused (``bernoulli_log_mass``); everything else is torch's.

    Its log_prob is not validated: on grey levels it still returns the cross-entropy, and
    ``support.check`` says that those values are outside its support.
    """

    def __init__(self, logits: Tensor, event_dims: int) -> None:
        base = Bernoulli(logits=logits, validate_args=False)
        super().__init__(base, event_dims, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return bernoulli_log_mass(self.base_dist.logits, value, self.reinterpreted_batch_ndims)


class IndependentNormal(Independent):
    """N(mean, sigma^2) independently over the last ``event_dims`` dimensions, its ``log_prob``
    fused: -1/2 sum ((x - mean) / sigma)^2 - sum log sigma - (D / 2) log 2 pi."""

    def __init__(self, mean: Tensor, log_sigma: Tensor, event_dims: int) -> None:
        self.log_sigma = log_sigma.clamp(min=MIN_LOG_SIGMA).expand_as(mean)
        base = Normal(mean, self.log_sigma.exp(), validate_args=False)
        super().__init__(base, event_dims, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
        mean, log_sigma = _full_precision(self.base_dist.loc), _full_precision(self.log_sigma)
        z = (value - mean) * torch.exp(-log_sigma)
        n = math.prod(self.event_shape)
        return -0.5 * z.square().sum(dims) - log_sigma.sum(dims) - n * HALF_LOG_2PI


def bernoulli(logits: Tensor, event_dims: int = 0) -> IndependentBernoulli:
    """A Bernoulli on {0, 1} per element, independent over the last ``event_dims`` dimensions."""
    return IndependentBernoulli(logits, event_dims)


def continuous_bernoulli(logits: Tensor) -> ContinuousBernoulli:
    """The continuous Bernoulli on [0, 1], normalised for every logit."""
    return ContinuousBernoulli(logits=logits)


def gaussian(mean: Tensor, log_sigma: Tensor, event_dims: int = 0) -> IndependentNormal:
    """N(mean, sigma^2) per element, independent over the last ``event_dims`` dimensions;
    sigma = exp(log_sigma), at least exp(MIN_LOG_SIGMA)."""
    return IndependentNormal(mean, log_sigma, event_dims)


def discretized_logistic(decoded: Tensor, levels: int, dim: int) -> DiscretizedLogistic:
    """A DiscretizedLogistic from a decoder output with two numbers per data element.

    ``decoded`` is split in halves along ``dim`` (the data's first dimension: channels, or
    features): loc = 0.5 + the first half (a decoder near 0 at initialisation puts the mass
    around mid-grey), log scale = the second half.
    """
    raw_loc, log_scale = decoded.chunk(2, dim=dim)
    return DiscretizedLogistic(0.5 + raw_loc, log_scale, levels)

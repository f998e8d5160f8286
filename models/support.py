"""Prior support and standardization: the fixed maps between user space and network space.

The networks of every family work on standardized, unconstrained parameters ``u``:

.. math:: u = (\\phi(\\theta) - \\mu) / \\sigma

where :math:`\\phi` maps the prior box to :math:`\\mathbb{R}` per dimension (identity when
unbounded, :math:`\\log(\\theta - l)` or :math:`\\log(h - \\theta)` when bounded on one side,
:math:`\\operatorname{logit}((\\theta - l) / (h - l))` when bounded on both), and
:math:`\\mu, \\sigma` are the mean and standard deviation of :math:`\\phi(\\theta)` over the
training set. Draws are mapped back with :math:`\\phi^{-1}`, so no draw ever leaves the
prior (a transform, not rejection). Observations ``x`` are z-scored the same way.

All statistics are buffers, so a saved estimator carries them in its state dict.
The per-dimension mix of maps is written by hand because ``torch.distributions`` and
zuko transforms apply one map to the whole vector.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigError, OutOfSupportError

# Draws within this relative distance of a bound are pulled inside before logit/log, so
# that a parameter lying exactly on the bound (float rounding of a uniform prior) is fine.
_BOUND_EPS = 1e-6
# exp() of larger values overflows float32.
_MAX_LOG = 80.0


@dataclass(frozen=True)
class BoxPrior:
    """Per-dimension bounds of the prior support; ``None`` marks an unbounded side.

    Arguments:
        low: Lower bounds, one per parameter dimension (``None`` for :math:`-\\infty`).
        high: Upper bounds, one per parameter dimension (``None`` for :math:`+\\infty`).

    Example:
        >>> prior = BoxPrior(low=(0.0, -1.0), high=(None, 1.0))  # a rate and a bounded value
        >>> prior.dim
        2
    """

    low: tuple[float | None, ...]
    high: tuple[float | None, ...]

    def __post_init__(self) -> None:
        low = tuple(None if v is None else float(v) for v in self.low)
        high = tuple(None if v is None else float(v) for v in self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if len(low) != len(high):
            raise ConfigError(
                f"prior low and high must have the same length, got {len(low)} and {len(high)}"
            )
        for i, (lo, hi) in enumerate(zip(low, high, strict=True)):
            for side, v in (("low", lo), ("high", hi)):
                if v is not None and not math.isfinite(v):
                    raise ConfigError(f"prior {side}[{i}] must be finite or null, got {v}")
            if lo is not None and hi is not None and not lo < hi:
                raise ConfigError(f"prior low[{i}]={lo} must be smaller than high[{i}]={hi}")

    @property
    def dim(self) -> int:
        """Number of parameter dimensions."""
        return len(self.low)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-ready dict ``{"type": "box", "low": [...], "high": [...]}``."""
        return {"type": "box", "low": list(self.low), "high": list(self.high)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoxPrior:
        """Builds a prior from :meth:`to_dict`'s output (``type`` may be omitted)."""
        kind = data.get("type", "box")
        if kind != "box":
            raise ConfigError(f"prior type must be 'box', got {kind!r}")
        try:
            return cls(low=tuple(data["low"]), high=tuple(data["high"]))
        except KeyError as e:
            raise ConfigError(f"prior is missing the field {e.args[0]!r}") from None

    @classmethod
    def unbounded(cls, dim: int) -> BoxPrior:
        """A prior with no bounds at all."""
        return cls(low=(None,) * dim, high=(None,) * dim)


class Standardize(nn.Module):
    """Z-scoring :math:`(v - \\mu) / \\sigma` with statistics stored as buffers.

    Arguments:
        features: Number of features :math:`F`.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    mean: Tensor
    std: Tensor

    @torch.no_grad()
    def fit(self, values: Tensor) -> None:
        """Sets the statistics from ``values`` with shape :math:`(N, F)`.

        Constant features keep a scale of 1 so they stay finite.
        """
        mean = values.mean(dim=0)
        std = values.std(dim=0) if values.shape[0] > 1 else torch.ones_like(mean)
        std = torch.where(std > 1e-8 * (1 + mean.abs()), std, torch.ones_like(std))
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, values: Tensor) -> Tensor:
        """Standardizes ``values`` with shape :math:`(*, F)`."""
        return (values - self.mean) / self.std

    def inverse(self, values: Tensor) -> Tensor:
        """Undoes :meth:`forward`."""
        return torch.addcmul(self.mean, values, self.std)


BOUNDED_MAPS = ("logit", "fold")


class ThetaTransform(nn.Module):
    """The map :math:`\\theta \\mapsto u` from a prior box to standardized :math:`\\mathbb{R}^D`.

    With ``bounded="fold"`` the bounded dimensions are only rescaled (to :math:`[0, 1]`
    between two bounds, to the distance from a single bound), not stretched by a logit or
    log, and :meth:`fold_u` reflects any point back into the box (a triangle wave between
    two bounds, a mirror at a single one). A generator that folds its outputs draws
    inside the prior in one pass and can put mass right up to a bound, where a logit map
    would need infinitely long tails. The fold is not invertible, so it is for families
    without a density.

    Arguments:
        theta_dim: Number of parameter dimensions :math:`D`.
        prior: The prior support; ``None`` for an unbounded prior.
        bounded: ``logit`` (bijective maps, for every family) or ``fold``.
    """

    def __init__(
        self, theta_dim: int, prior: BoxPrior | None = None, bounded: str = "logit"
    ) -> None:
        super().__init__()
        if bounded not in BOUNDED_MAPS:
            raise ConfigError(f"bounded must be one of {BOUNDED_MAPS}, got {bounded!r}")
        self.bounded = bounded
        prior = prior or BoxPrior.unbounded(theta_dim)
        if prior.dim != theta_dim:
            raise ConfigError(f"prior has {prior.dim} dimension(s) but theta has {theta_dim}")
        self.prior = prior
        low = torch.tensor([-math.inf if v is None else v for v in prior.low])
        high = torch.tensor([math.inf if v is None else v for v in prior.high])
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        has_low, has_high = torch.isfinite(low), torch.isfinite(high)
        both, lower, upper = has_low & has_high, has_low & ~has_high, ~has_low & has_high
        # Column indices of each kind of map (lists for tests of emptiness, tensors for
        # indexing: a list index builds a new tensor on every call); fixed by the prior,
        # so not saved.
        self._both = both.nonzero().flatten().tolist()
        self._lower = lower.nonzero().flatten().tolist()
        self._upper = upper.nonzero().flatten().tolist()
        for name, mask in (("both", both), ("lower", lower), ("upper", upper)):
            self.register_buffer(f"_{name}_index", mask.nonzero().flatten(), persistent=False)
        # The fold mode's affine map as whole-vector operations (no indexing on the
        # sampling path): phi = (theta - origin) / width, theta = origin + width * phi,
        # with (low, high - low) between two bounds, (low, 1) above one, (high, -1) below
        # one and (0, 1) when unbounded; these give the same floats as the per-kind maps.
        origin = torch.where(has_low, low, torch.where(has_high, high, torch.zeros_like(low)))
        width = torch.where(both, high - low, torch.where(upper, -1.0, 1.0))
        self.register_buffer("_fold_origin", origin, persistent=False)
        self.register_buffer("_fold_width", width, persistent=False)
        self.register_buffer("_fold_width_negated", -width, persistent=False)
        self.register_buffer("_fold_both", both, persistent=False)
        self.register_buffer("_fold_one_sided", lower | upper, persistent=False)
        self._fold_all_both = bool(both.all())  # then the fold needs no torch.where
        # The box in the fold's coordinates: [0, 1] between two bounds, [0, inf) past one.
        has_bound = has_low | has_high  # (not `bounded`: the map's name, above)
        inf, zero = torch.full_like(low, math.inf), torch.zeros_like(low)
        self.register_buffer("_phi_low", torch.where(has_bound, zero, -inf), persistent=False)
        self.register_buffer("_phi_high", torch.where(both, zero + 1, inf), persistent=False)
        self.standardize = Standardize(theta_dim)

    low: Tensor
    high: Tensor
    _both_index: Tensor
    _lower_index: Tensor
    _upper_index: Tensor
    _fold_origin: Tensor
    _fold_width: Tensor
    _fold_width_negated: Tensor
    _fold_both: Tensor
    _phi_low: Tensor
    _phi_high: Tensor
    _fold_one_sided: Tensor

    def unconstrain(self, theta: Tensor) -> Tensor:
        """Applies :math:`\\phi` to ``theta`` with shape :math:`(*, D)`."""
        if self.bounded == "fold":
            return (theta - self._fold_origin) / self._fold_width
        out = theta.clone()
        if self._both:
            i = self._both_index
            lo, hi = self.low[i], self.high[i]
            s = ((theta[..., i] - lo) / (hi - lo)).clamp(_BOUND_EPS, 1 - _BOUND_EPS)
            out[..., i] = torch.log(s) - torch.log1p(-s)
        if self._lower:
            i = self._lower_index
            width = (theta[..., i] - self.low[i]).clamp_min(_BOUND_EPS)
            out[..., i] = torch.log(width)
        if self._upper:
            i = self._upper_index
            width = (self.high[i] - theta[..., i]).clamp_min(_BOUND_EPS)
            out[..., i] = torch.log(width)
        return out

    def fold(self, phi: Tensor) -> Tensor:
        """Reflects rescaled values ``(*, D)`` into the box (identity in ``logit`` mode)."""
        if self.bounded != "fold":
            return phi
        out = phi
        if self._lower or self._upper:
            out = torch.where(self._fold_one_sided, phi.abs(), out)
        if self._both:
            # Triangle wave of period 2: identity on [0, 1], mirrored beyond either end.
            wave = 1 - (torch.remainder(phi, 2) - 1).abs()
            out = wave if self._fold_all_both else torch.where(self._fold_both, wave, out)
        return out

    def fold_u(self, u: Tensor) -> Tensor:
        """:meth:`fold` in standardized coordinates: ``u`` ``(*, D)`` to a point in the box."""
        if self.bounded != "fold":
            return u
        return self.standardize(self.fold(self.standardize.inverse(u)))

    def constrain_inside(self, phi: Tensor) -> Tensor:
        """:meth:`constrain` for fold-mode coordinates ``phi`` ``(*, D)`` known to lie in
        the box, where the fold is the identity: one affine step (and the clamp that
        keeps rounding inside)."""
        return torch.clamp(self.constrain_inside_affine(phi), self.low, self.high)

    def constrain_inside_affine(self, phi: Tensor) -> Tensor:
        """:meth:`constrain_inside` without its clamp, for any ``phi`` ``(*, D)``: the
        affine map ``origin + width * phi`` (what a served energy flow folds into its
        last layer)."""
        return torch.addcmul(self._fold_origin, self._fold_width, phi)

    def inside_phi(self, phi: Tensor) -> Tensor:
        """Whether fold-mode coordinates ``phi`` ``(*, D)`` lie in the prior box, ``(*)``."""
        return ((phi >= self._phi_low) & (phi <= self._phi_high)).all(dim=-1)

    def inside_u(self, u: Tensor) -> Tensor:
        """:meth:`inside_phi` in standardized coordinates: ``u`` ``(*, D)`` to ``(*)``."""
        return self.inside_phi(self.standardize.inverse(u))

    def outside_u(self, u: Tensor, band: float = 1.0) -> Tensor:
        """Squared distance of ``u`` ``(*, D)`` beyond ``band`` box widths past the box,
        standardized, ``(*)``.

        Between two bounds the fold reflects once on :math:`[-1, 0]` and :math:`[1, 2]`
        (rescaled) and wraps again beyond; with ``band = 1`` (one reflection) this is the
        distance past that band, with ``band = 0`` the distance outside the box. A single
        bound's mirror never wraps, so it adds nothing there, nor does the ``logit``
        mode. A generator that folds its outputs is trained with this as a penalty (see
        ``EnergyFlowConfig.fold_penalty`` and ``fold_band``).
        """
        if self.bounded != "fold" or not self._both:
            return u.new_zeros(u.shape[:-1])
        i = self._both_index
        phi = self.standardize.inverse(u)[..., i]
        distance = (-band - phi).clamp_min(0) + (phi - 1 - band).clamp_min(0)
        return ((distance / self.standardize.std[i]) ** 2).sum(dim=-1)

    def constrain(self, phi: Tensor) -> Tensor:
        """Applies :math:`\\phi^{-1}`; the result always lies in the closed prior box."""
        if self.bounded == "fold":
            if self._fold_all_both:  # low + w (1 - |r - 1|) as high - w |r - 1|: one op less
                wave = (torch.remainder(phi, 2) - 1).abs()
                theta = torch.addcmul(self.high, self._fold_width_negated, wave)
            else:
                theta = torch.addcmul(self._fold_origin, self._fold_width, self.fold(phi))
            return torch.clamp(theta, self.low, self.high)
        out = phi.clone()
        if self._both:
            i = self._both_index
            lo, hi = self.low[i], self.high[i]
            out[..., i] = torch.clamp(lo + (hi - lo) * torch.sigmoid(phi[..., i]), lo, hi)
        if self._lower:
            i = self._lower_index
            out[..., i] = self.low[i] + torch.exp(phi[..., i].clamp_max(_MAX_LOG))
        if self._upper:
            i = self._upper_index
            out[..., i] = self.high[i] - torch.exp(phi[..., i].clamp_max(_MAX_LOG))
        return out

    def log_abs_det_jacobian(self, theta: Tensor) -> Tensor:
        """:math:`\\log |\\det \\partial u / \\partial \\theta|` with shape :math:`(*)`."""
        if self.bounded == "fold":
            raise ConfigError("the fold map is not invertible: no density goes with it")
        terms = -torch.log(self.standardize.std).expand_as(theta).clone()
        if self._both:
            i = self._both_index
            lo, hi = self.low[i], self.high[i]
            s = ((theta[..., i] - lo) / (hi - lo)).clamp(_BOUND_EPS, 1 - _BOUND_EPS)
            terms[..., i] = terms[..., i] - torch.log(hi - lo) - torch.log(s) - torch.log1p(-s)
        if self._lower:
            i = self._lower_index
            terms[..., i] = terms[..., i] - torch.log(
                (theta[..., i] - self.low[i]).clamp_min(_BOUND_EPS)
            )
        if self._upper:
            i = self._upper_index
            terms[..., i] = terms[..., i] - torch.log(
                (self.high[i] - theta[..., i]).clamp_min(_BOUND_EPS)
            )
        return terms.sum(dim=-1)

    def contains(self, theta: Tensor) -> Tensor:
        """Boolean mask with shape :math:`(*)`: which rows lie in the closed prior box."""
        return ((theta >= self.low) & (theta <= self.high)).all(dim=-1)

    def check_support(self, theta: Tensor, name: str = "theta") -> None:
        """Raises :class:`OutOfSupportError` naming the first row outside the prior."""
        inside = self.contains(theta)
        if not bool(inside.all()):
            flat = theta.reshape(-1, theta.shape[-1])
            row = int((~inside.reshape(-1)).nonzero()[0])
            raise OutOfSupportError(
                f"{name} row {row} = {flat[row].tolist()} lies outside the prior box "
                f"low={list(self.prior.low)}, high={list(self.prior.high)} "
                f"({int((~inside).sum())} row(s) outside in all)"
            )

    @torch.no_grad()
    def fit(self, theta: Tensor) -> None:
        """Sets the standardization from training parameters with shape :math:`(N, D)`."""
        self.standardize.fit(self.unconstrain(theta))

    def forward(self, theta: Tensor) -> Tensor:
        """Maps ``theta`` with shape :math:`(*, D)` to ``u`` with the same shape."""
        return self.standardize(self.unconstrain(theta))

    def inverse(self, u: Tensor) -> Tensor:
        """Maps ``u`` back to the prior box."""
        return self.constrain(self.standardize.inverse(u))


def prior_from_bounds(
    low: Sequence[float | None] | None, high: Sequence[float | None] | None, dim: int
) -> BoxPrior:
    """Builds a :class:`BoxPrior`, reading a missing side as unbounded."""
    return BoxPrior(
        low=tuple(low) if low is not None else (None,) * dim,
        high=tuple(high) if high is not None else (None,) * dim,
    )

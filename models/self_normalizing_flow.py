"""Self normalizing flow: dense linear layers trained without their determinant.

The flow maps parameters to noise through dense linear layers :math:`L_k(v) = W_k v + b_k`
(:math:`D \\times D`, unconstrained) interleaved with coupling transforms :math:`C_k`
conditioned on the context :math:`h`:

.. math::
    z = f(u; h) = (C_K \\circ L_K \\circ \\dots \\circ C_1 \\circ L_1)(u), \\qquad
    \\log q(u \\mid h) = \\log \\mathcal{N}(z; 0, I)
        + \\sum_k \\log |\\det W_k| + \\sum_k \\log |\\det \\partial C_k|.

Each linear layer also holds a learned approximate inverse :math:`R_k \\approx W_k^{-1}`.
In training, the gradient :math:`\\nabla_W \\log |\\det W| = W^{-T}` is replaced by
:math:`R^T`, and :math:`R` is trained on the likelihood written through it (the layer read
as :math:`v = R (y - b)`), with :math:`W^T` standing in for :math:`R^{-T}`. Per layer and
pair, with :math:`g = \\partial \\ell / \\partial y` and :math:`\\delta = W^T g`:

.. math::
    \\nabla_W \\ell \\approx g v^T - R^T, \\qquad
    \\nabla_R \\ell \\approx -\\delta (W v)^T + W^T.

No matrix is inverted or factorized for a gradient, so a step costs :math:`O(D^2)` per
layer. A reconstruction term keeps :math:`R` near :math:`W^{-1}`; the loss per pair is

.. math::
    \\ell(u, h) = -\\log q(u \\mid h)
        + \\lambda \\sum_k \\| \\mathrm{sg}(v_k) - R_k W_k \\, \\mathrm{sg}(v_k) \\|^2,

with :math:`v_k` the input of layer :math:`k` and :math:`\\mathrm{sg}` a stop-gradient (the
reconstruction trains :math:`W_k` and :math:`R_k`, not the layers before). Each matrix gets
its own view's likelihood gradient in full; the authors' implementation averages the
two views, halving both likelihood gradients, so this update equals theirs with weight
:math:`\\lambda / 2` at twice the step size.

The *value* of :math:`\\log |\\det W_k|` in the loss is exact (``slogdet`` outside autograd,
cheap for the few parameters of a posterior) so that training and validation losses are
true negative log-likelihoods; only its gradient is the surrogate. :meth:`log_prob` is
exact (``log_prob_kind = "exact"``): it runs the forward map with :math:`W_k` and exact
determinants. Sampling runs the flow backwards through the exact inverses
:math:`W_k^{-1}` (one solve of a :math:`D \\times D` system per layer and call), so draws
follow the density that :meth:`log_prob` evaluates and early stopping validates.
``sampling_inverse="learned"`` samples through :math:`R_k` instead, as the paper does (no
solve), which follows that density only as far as :math:`R_k W_k \\approx I`: on sbibm
bernoulli_glm at 10^4 simulations :math:`\\| R_k W_k - I \\|_F` was 0.16-0.64 after
training, and the same weights scored C2ST 0.892 through :math:`R_k` against 0.679
through :math:`W_k^{-1}` (``docs/BENCHMARKS.md``, section 1.3).

References:
    | Self Normalizing Flows (Keller et al., 2021)
    | https://arxiv.org/abs/2011.07248

Example:
    >>> flow = SelfNormalizingFlow(theta_dim=2, x_dim=3)
    >>> flow.sample((100,), x=torch.randn(3)).shape
    torch.Size([100, 2])
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn
from zuko.flows import MaskedAutoregressiveTransform
from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

from .base import ACTIVATIONS, EstimatorConfig, PosteriorEstimator
from .config import require
from .support import BoxPrior

SAMPLING_INVERSES = ("exact", "learned")


@dataclasses.dataclass(frozen=True)
class CouplingFlowConfig(EstimatorConfig):
    """Options of a flow of dense linear layers and conditional couplings.

    Arguments:
        transforms: Number of (linear, coupling) blocks :math:`K`.
        hidden_features: Hidden layer sizes of each coupling's network.
    """

    transforms: int = 4
    hidden_features: tuple[int, ...] = (64, 64)

    def validate(self) -> None:
        super().validate()
        require(self.transforms >= 1, f"transforms must be >= 1, got {self.transforms}")
        require(len(self.hidden_features) >= 1, "hidden_features needs at least one layer")
        require(all(h > 0 for h in self.hidden_features), "hidden_features must be > 0")


def conditional_couplings(
    features: int, context: int, config: CouplingFlowConfig, bins: int = 0
) -> nn.ModuleList:
    """Builds ``config.transforms`` coupling transforms conditioned on a context.

    Each one transforms half of the features given the other half and the context
    (for one feature: given the context only), alternating halves.

    Arguments:
        features: Number of features :math:`D`.
        context: Number of context features :math:`C`.
        config: Number of couplings, hidden sizes and activation.
        bins: Bins of a monotonic rational-quadratic spline per feature; 0 gives an
            affine coupling (smooth in its input, as score matching needs).

    Returns:
        Lazy transforms: ``couplings[k](h)`` is a transform of ``(N, D)`` given ``h``.
    """
    univariate: Any = MonotonicAffineTransform
    shapes: list[tuple[int, ...]] = [(), ()]
    if bins > 0:
        univariate, shapes = MonotonicRQSTransform, [(bins,), (bins,), (bins - 1,)]
    order = torch.arange(features)
    return nn.ModuleList(
        MaskedAutoregressiveTransform(
            features,
            context,
            passes=2,
            order=order if k % 2 == 0 else order.flip(0),
            univariate=univariate,
            shapes=shapes,
            hidden_features=config.hidden_features,
            activation=ACTIVATIONS[config.activation],
        )
        for k in range(config.transforms)
    )


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """:math:`\\log \\mathcal{N}(z; 0, I)` of ``z`` with shape ``(N, D)``, shape ``(N,)``."""
    return -0.5 * (z.square().sum(dim=-1) + z.shape[-1] * math.log(2 * math.pi))


class _SelfNormMatmul(torch.autograd.Function):
    """:math:`y = v W^T`, whose backward also gives :math:`R` its likelihood gradient.

    The input and :math:`W` get their exact gradients; :math:`R`, which the output does not
    depend on, gets :math:`-\\delta y^T` with :math:`\\delta = W^T g` (the data term of the
    likelihood written as :math:`v = R y`, with :math:`W^T \\approx R^{-T}`).
    """

    @staticmethod
    def forward(v: Tensor, weight: Tensor, inverse: Tensor) -> Tensor:
        return v @ weight.T

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor], output: Tensor) -> None:
        v, weight, _ = inputs
        ctx.save_for_backward(v, weight, output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        v, weight, y = ctx.saved_tensors
        delta = grad @ weight
        return delta, grad.T @ v, -(delta.T @ y)


def surrogate_log_abs_det(weight: Tensor, inverse: Tensor) -> Tensor:
    """:math:`\\log |\\det W|` whose gradients are :math:`R^T` for ``weight`` and
    :math:`-W^T` for ``inverse``.

    The value is exact (computed outside autograd); the gradients come from
    :math:`\\operatorname{tr}(\\mathrm{sg}(R) W) - \\operatorname{tr}(R \\, \\mathrm{sg}(W))`,
    which is zero in value.

    Arguments:
        weight: The matrix :math:`W`, shape ``(D, D)``.
        inverse: Its approximate inverse :math:`R`, shape ``(D, D)``.

    Returns:
        A scalar.
    """
    exact = torch.linalg.slogdet(weight.detach()).logabsdet
    traced = (inverse.detach() * weight.T).sum() - (inverse * weight.detach().T).sum()
    return exact + traced


class SelfNormLinear(nn.Module):
    """Dense linear layer :math:`y = W v + b` with a learned inverse :math:`v \\approx R (y - b)`.

    :math:`W` starts as a random orthogonal matrix and :math:`R` as its transpose, so the
    layer starts exactly invertible and mixing.

    Arguments:
        features: Number of features :math:`D`.

    Example:
        >>> layer = SelfNormLinear(3)
        >>> v = torch.randn(5, 3)
        >>> torch.allclose(layer.inverse(layer(v)), v, atol=1e-5)
        True
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        q = torch.linalg.qr(torch.randn(features, features)).Q
        self.weight = nn.Parameter(q)
        self.inverse_weight = nn.Parameter(q.T.clone())
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, v: Tensor, surrogate: bool = False) -> Tensor:
        """Maps ``v`` ``(N, D)`` to ``y``; ``surrogate`` routes likelihood gradients to R."""
        if surrogate:
            return _SelfNormMatmul.apply(v, self.weight, self.inverse_weight) + self.bias
        return v @ self.weight.T + self.bias

    def inverse(self, y: Tensor) -> Tensor:
        """The approximate inverse :math:`R (y - b)` of ``y`` ``(N, D)``."""
        return (y - self.bias) @ self.inverse_weight.T

    def exact_inverse(self, y: Tensor) -> Tensor:
        """The exact inverse :math:`W^{-1} (y - b)` of ``y`` ``(N, D)``: one solve."""
        return torch.linalg.solve(self.weight.T, y - self.bias, left=False)

    def log_abs_det(self, surrogate: bool = False) -> Tensor:
        """:math:`\\log |\\det W|`, exact; with ``surrogate``, with the gradients of
        :func:`surrogate_log_abs_det`."""
        if surrogate:
            return surrogate_log_abs_det(self.weight, self.inverse_weight)
        return torch.linalg.slogdet(self.weight).logabsdet

    def reconstruction(self, v: Tensor) -> Tensor:
        """:math:`\\| \\mathrm{sg}(v) - R W \\mathrm{sg}(v) \\|^2` per row of ``v`` ``(N, D)``."""
        v = v.detach()
        return (v - v @ self.weight.T @ self.inverse_weight.T).square().sum(dim=-1)


@dataclasses.dataclass(frozen=True)
class SelfNormalizingFlowConfig(CouplingFlowConfig):
    """Configuration of :class:`SelfNormalizingFlow`.

    Arguments:
        bins: Spline bins of each coupling; 0 for affine couplings.
        reconstruction_weight: Weight :math:`\\lambda` of the reconstruction term.
        sampling_inverse: ``"exact"`` draws through :math:`W_k^{-1}` (a solve per
            layer), ``"learned"`` through the learned inverses :math:`R_k` (the paper's
            way, exact only as far as :math:`R_k W_k = I`). Training is the same.
    """

    bins: int = 8
    reconstruction_weight: float = 1.0
    sampling_inverse: str = "exact"

    def validate(self) -> None:
        super().validate()
        require(self.bins >= 0, f"bins must be >= 0, got {self.bins}")
        require(self.bins != 1, "bins must be 0 (affine) or >= 2")
        require(self.reconstruction_weight > 0, "reconstruction_weight must be > 0")
        require(
            self.sampling_inverse in SAMPLING_INVERSES,
            f"sampling_inverse must be one of {SAMPLING_INVERSES}, got {self.sampling_inverse!r}",
        )


class SelfNormalizingFlow(PosteriorEstimator):
    """Conditional flow of self-normalizing dense layers and conditional couplings.

    Arguments:
        theta_dim: Number of parameters :math:`D`.
        x_dim: Number of observed features :math:`L`.
        config: Hyperparameters.
        prior: Support of :math:`\\theta`.
    """

    family = "self_normalizing_flow"
    log_prob_kind = "exact"
    config_class = SelfNormalizingFlowConfig
    config: SelfNormalizingFlowConfig

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        config: SelfNormalizingFlowConfig | None = None,
        prior: BoxPrior | None = None,
    ) -> None:
        config = config or self.config_class()
        super().__init__(theta_dim, x_dim, config, prior)
        self.noise_features = theta_dim
        self.linears = nn.ModuleList(SelfNormLinear(theta_dim) for _ in range(config.transforms))
        self.couplings = conditional_couplings(
            theta_dim, self.context_features, config, config.bins
        )

    def _linears(self) -> list[SelfNormLinear]:
        """The dense layers, typed (a ``ModuleList`` yields plain modules)."""
        return list(self.linears)  # type: ignore[arg-type]

    def _flow(self, u: Tensor, h: Tensor, surrogate: bool) -> tuple[Tensor, Tensor]:
        """:math:`\\log q(u \\mid h)` and the summed reconstruction error, both ``(N,)``."""
        z, ladj = u, torch.zeros_like(u[:, 0])
        reconstruction = torch.zeros_like(ladj)
        for linear, coupling in zip(self._linears(), self.couplings, strict=True):
            if surrogate:
                reconstruction = reconstruction + linear.reconstruction(z)
            z = linear(z, surrogate)
            z, coupling_ladj = coupling(h).call_and_ladj(z)
            ladj = ladj + coupling_ladj + linear.log_abs_det(surrogate)
        return standard_normal_log_prob(z) + ladj, reconstruction

    def _loss_u(self, u: Tensor, h: Tensor) -> Tensor:
        log_prob, reconstruction = self._flow(u, h, surrogate=True)
        return -log_prob + self.config.reconstruction_weight * reconstruction

    def _log_prob_u(self, u: Tensor, h: Tensor) -> Tensor:
        return self._flow(u, h, surrogate=False)[0]

    def _transform_noise(self, noise: Tensor, h: Tensor) -> Tensor:
        exact = self.config.sampling_inverse == "exact"
        u = noise
        pairs = zip(reversed(self._linears()), reversed(self.couplings), strict=True)
        for linear, coupling in pairs:
            v = coupling(h).inv(u)
            u = linear.exact_inverse(v) if exact else linear.inverse(v)
        return u

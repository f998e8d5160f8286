"""The interface every posterior family implements: :class:`PosteriorEstimator`.

An estimator is a conditional distribution :math:`q_\\phi(\\theta \\mid x)` that works,
internally, on standardized unconstrained parameters :math:`u` and on a context vector
:math:`h = e(\\text{zscore}(x))` (see :mod:`sbiserve.models.support`). A family only
builds its networks in ``__init__`` and implements three hooks on those inner spaces:

- ``_transform_noise(noise, h) -> u``: a draw from noise (reparameterized);
- ``_loss_u(u, h) -> (N,)``: the training objective per pair;
- ``_log_prob_u(u, h) -> (N,)``: the log-density, where the family has one.

Shapes follow ``sbi``: ``sample(sample_shape, x)`` with ``x`` of shape ``(B, L)`` gives
``(*sample_shape, B, D)``; with a single ``x`` of shape ``(L,)`` it gives
``(*sample_shape, D)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import zuko
from torch import Tensor, nn

from .config import Config, require
from .errors import NoDensityError, ShapeError
from .support import BoxPrior, Standardize, ThetaTransform
from .validation import as_float_tensor, check_features, check_finite

LogProbKind = Literal["exact", "estimate", "unnormalized", "none"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


@dataclasses.dataclass(frozen=True)
class EstimatorConfig(Config):
    """Options shared by every family.

    Arguments:
        embedding_features: Size of the learned embedding of ``x``; 0 uses the
            standardized ``x`` itself as context (right for low-dimensional ``x``).
        embedding_hidden: Hidden layer sizes of the embedding MLP.
        activation: Activation of every MLP (relu, elu, silu, gelu, tanh).
    """

    embedding_features: int = 0
    embedding_hidden: tuple[int, ...] = (128, 128)
    activation: str = "silu"

    def validate(self) -> None:
        require(self.embedding_features >= 0, "embedding_features must be >= 0")
        require(all(h > 0 for h in self.embedding_hidden), "embedding_hidden must be > 0")
        require(
            self.activation in ACTIVATIONS,
            f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}",
        )


class PosteriorEstimator(nn.Module):
    """Base class of every family: a conditional distribution :math:`q(\\theta \\mid x)`.

    Arguments:
        theta_dim: Number of parameters :math:`D`.
        x_dim: Number of observed features :math:`L`.
        config: The family's configuration.
        prior: Support of :math:`\\theta`; draws never leave it.
    """

    family: ClassVar[str] = ""
    log_prob_kind: ClassVar[LogProbKind] = "none"
    reparameterized: ClassVar[bool] = True
    """Whether gradients flow from draws to the parameters (false for resampling)."""
    config_class: ClassVar[type[EstimatorConfig]] = EstimatorConfig
    default_min_steps: ClassVar[int] = 0
    """Optimizer steps before early stopping when ``TrainConfig.min_steps`` is null.

    Zero where the validation loss is a likelihood (every family but the energy flows):
    it is a faithful stopping signal, and the best epoch, which is restored, mostly
    comes early (the quick protocol at 10^3, the four such families against a
    1,000-step floor: C2ST within 0.01 on 31 of 32 cells, FFJORD's bernoulli_glm 0.811
    -> 0.853, in 0.1-0.55x the time on six of eight tasks; ``docs/BENCHMARKS.md``
    section 1.3)."""
    default_plateau_steps: ClassVar[int] = 1000
    """Optimizer steps before the ``plateau`` schedule may cut the learning rate when
    ``TrainConfig.min_steps`` is null (an early cut slows a fit that is still improving:
    two_moons at 10^3 then took 1,000 epochs where it took 627)."""
    prefer_later_epochs: ClassVar[bool] = False
    """Whether :func:`~sbiserve.models.fit` keeps the latest epoch whose validation loss
    is within one standard error of the best, rather than the best (true where the
    validation loss is nearly blind to what is learned late)."""

    @classmethod
    def budget_defaults(cls, num_simulations: int, theta_dim: int | None = None) -> dict[str, Any]:
        """Option defaults that depend on the number of simulations and, where it is
        known, of parameters (none here).

        :func:`~sbiserve.models.split_options` puts these under the options a caller
        names, when it is told the budget (the service and the benchmark tell it); a
        config built directly keeps the class defaults.
        """
        return {}

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        config: EstimatorConfig,
        prior: BoxPrior | None = None,
    ) -> None:
        super().__init__()
        require(theta_dim >= 1, f"theta_dim must be >= 1, got {theta_dim}")
        require(x_dim >= 1, f"x_dim must be >= 1, got {x_dim}")
        self.theta_dim = theta_dim
        self.x_dim = x_dim
        self.config = config
        self.theta_transform = ThetaTransform(theta_dim, prior)
        self.x_standardize = Standardize(x_dim)
        if config.embedding_features > 0:
            self.embedding: nn.Module = zuko.nn.MLP(
                x_dim,
                config.embedding_features,
                config.embedding_hidden,
                activation=ACTIVATIONS[config.activation],
            )
            self.context_features = config.embedding_features
        else:
            self.embedding = nn.Identity()
            self.context_features = x_dim

    # ------------------------------------------------------------------ family hooks
    noise_features: int = 0
    """Width of the standard-normal noise one draw consumes (see :meth:`draw_noise`)."""

    context_broadcasts: bool = False
    """Whether :meth:`sample_from_context` takes one context ``(C,)`` or ``(1, C)`` for
    every row of noise (then :meth:`sample` and the worker skip repeating it, an
    operator less per call)."""

    def _transform_noise(self, noise: Tensor, h: Tensor) -> Tensor:
        """Maps noise with shape ``(N, *noise)`` and context ``(N, C)`` to ``u`` ``(N, D)``."""
        raise NotImplementedError

    def _loss_u(self, u: Tensor, h: Tensor) -> Tensor:
        """Training objective per pair, ``u`` with shape ``(N, D)``, ``h`` ``(N, C)``."""
        raise NotImplementedError

    def _log_prob_u(self, u: Tensor, h: Tensor) -> Tensor:
        """Log-density of ``u`` ``(N, D)`` given ``h`` ``(N, C)``, shape ``(N,)``."""
        raise NoDensityError(
            f"the family {self.family!r} is a generator without a density: "
            "log_prob is not available (sample from it instead)"
        )

    def fold_for_serving(self) -> None:
        """Rewrites the model for sampling only, once it will not train again.

        Called by :func:`~sbiserve.models.serving.prepare_for_serving` after the masks
        are folded. The default does nothing; a family may fold fixed affine steps into
        its weights there (the draws must stay the same up to rounding).
        """

    # ------------------------------------------------------------------ public API
    @property
    def prior(self) -> BoxPrior:
        """The prior support the estimator was built with."""
        return self.theta_transform.prior

    @property
    def device(self) -> torch.device:
        """Device the estimator lives on."""
        return self.theta_transform.low.device

    def fit_standardization(self, theta: Tensor, x: Tensor) -> None:
        """Sets the z-scoring of ``theta`` (after the support map) and ``x`` from data.

        Arguments:
            theta: Training parameters, shape :math:`(N, D)`, inside the prior.
            x: Training observations, shape :math:`(N, L)`.
        """
        self.theta_transform.check_support(theta)
        self.theta_transform.fit(theta)
        self.x_standardize.fit(x)

    def context(self, x: Tensor) -> Tensor:
        """Embeds observations ``(*, L)`` into contexts ``(*, C)``."""
        return self.embedding(self.x_standardize(x))

    def draw_noise(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """Standard-normal noise for ``num`` draws, shape ``(num, noise_features)``."""
        device = generator.device if generator is not None else self.device
        noise = torch.randn(num, self.noise_features, generator=generator, device=device)
        return noise if device == self.device else noise.to(self.device)

    def sample_from_context(self, h: Tensor, noise: Tensor) -> Tensor:
        """Draws ``theta`` ``(N, D)`` for contexts ``h`` ``(N, C)`` from given noise (or one
        context ``(C,)``/``(1, C)`` for all ``N`` rows where :attr:`context_broadcasts`).

        This is the step a server batches across requests: each request draws its own
        noise (its own seed), the forward pass is shared.
        """
        return self.theta_transform.inverse(self._transform_noise(noise, h))

    def sample(
        self,
        sample_shape: Sequence[int] | torch.Size = (),
        x: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draws :math:`\\theta \\sim q(\\theta \\mid x)`, reparameterized where possible.

        Arguments:
            sample_shape: Leading shape of the draws.
            x: One observation ``(L,)`` or a batch ``(B, L)``.
            generator: Random generator, for reproducible draws.

        Returns:
            Draws with shape ``(*sample_shape, D)`` for one observation and
            ``(*sample_shape, B, D)`` for a batch.
        """
        x, single = self._prepare_x(x)
        shape = torch.Size(sample_shape)
        num = math.prod(shape)
        h = self.context(x)  # (C,) for one observation, (B, C) for a batch
        # One view per step where a single observation allows it: at one draw every
        # torch operator is a fixed cost comparable to a layer's multiply.
        batch = 1 if single else h.shape[0]
        if single:
            rows = h if self.context_broadcasts else h.expand(num, -1)
        else:
            rows = h.expand(num, *h.shape).reshape(num * batch, -1)
        theta = self.sample_from_context(rows, self.draw_noise(num * batch, generator))
        out_shape = (*shape, self.theta_dim) if single else (*shape, batch, self.theta_dim)
        return theta if theta.shape == out_shape else theta.reshape(out_shape)

    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Training loss per pair, shape ``(N,)``, for ``theta`` ``(N, D)`` and ``x`` ``(N, L)``.

        Inputs are assumed checked (the training loop validates them once).
        """
        return self._loss_u(self.theta_transform(theta), self.context(x))

    def validation_loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """What early stopping compares per pair, shape ``(N,)``: the training loss.

        A family whose training objective can keep falling while the fit degenerates
        overrides this with a criterion that cannot (EBFlow: its exact negative
        log-likelihood).
        """
        return self.loss(theta, x)

    def log_prob(self, theta: Tensor, x: Tensor) -> Tensor:
        """:math:`\\log q(\\theta \\mid x)` of the kind :attr:`log_prob_kind`.

        Arguments:
            theta: Parameters with shape ``(*S, D)`` for one ``x`` of shape ``(L,)``, or
                ``(*S, B, D)`` for a batch of ``x`` with shape ``(B, L)``.
            x: Observation(s).

        Returns:
            Log-densities with shape ``(*S)`` or ``(*S, B)``; :math:`-\\infty` outside
            the prior.

        Raises:
            NoDensityError: For families without a density.
        """
        if self.log_prob_kind == "none":
            self._log_prob_u(theta, theta)  # raises the family's message
        x2d, single = self._prepare_x(x)
        if single:
            x2d = x2d[None]
        theta = as_float_tensor(theta, "theta").to(self.device)
        check_features(theta, self.theta_dim, "theta")
        check_finite(theta, "theta")
        if single:
            theta = theta.unsqueeze(-2)
        if theta.ndim < 2 or theta.shape[-2] not in (1, x2d.shape[0]):
            raise ShapeError(
                f"theta's batch dimension {list(theta.shape)[-2:-1]} does not match the "
                f"{x2d.shape[0]} observation(s) in x"
            )
        theta = theta.expand(*theta.shape[:-2], x2d.shape[0], self.theta_dim)
        lead = theta.shape[:-1]
        h = self.context(x2d).expand(*lead, -1).reshape(-1, self.context_features)
        flat = theta.reshape(-1, self.theta_dim)
        inside = self.theta_transform.contains(flat)
        u = self.theta_transform(flat)
        lp = self._log_prob_u(u, h) + self.theta_transform.log_abs_det_jacobian(flat)
        lp = torch.where(inside, lp, torch.full_like(lp, -math.inf)).reshape(lead)
        return lp.squeeze(-1) if single else lp

    def _prepare_x(self, x: Tensor | None) -> tuple[Tensor, bool]:
        """Checks observations; returns them, ``(L,)`` or ``(B, L)``, and whether one was given."""
        if x is None:
            raise ShapeError("x is required: pass one observation (L,) or a batch (B, L)")
        x = as_float_tensor(x, "x")
        if x.dtype != torch.float32 or x.device != self.device:  # each call is an operator
            x = x.to(self.device, torch.float32)
        check_features(x, self.x_dim, "x")
        check_finite(x, "x")
        if x.ndim == 1:
            return x, True
        if x.ndim != 2:
            raise ShapeError(f"x must be (L,) or (B, L), got shape {list(x.shape)}")
        return x, False

    def extra_repr(self) -> str:
        return f"family={self.family}, theta_dim={self.theta_dim}, x_dim={self.x_dim}"

"""Neural posterior estimation (NPE) with ``sbi``'s own flows: the familiar baseline.

A conditional normalizing flow :math:`q_\\phi(u \\mid h)` with a standard-normal base is
trained by maximum likelihood,

.. math:: \\ell(\\phi) = -\\log q_\\phi(u \\mid h),

on the standardized unconstrained parameters :math:`u` and the embedded observation
:math:`h`. The flow is built by ``sbi``'s builders (``build_nsf``, ``build_maf``), the
same networks ``sbi.inference.NPE(density_estimator="nsf" | "maf")`` trains, with the
same defaults; ``sbi``'s z-scoring is turned off because the base class already
standardizes :math:`\\theta` and :math:`x` and maps the prior box to
:math:`\\mathbb{R}^D`. A draw maps given noise :math:`z \\sim \\mathcal{N}(0, I)` through
the flow's inverse, so draws are reparameterized and reproducible from a seed.

References:
    | Automatic Posterior Transformation for Likelihood-free Inference
      (Greenberg et al., 2019); with one round of simulations from the prior, as here,
      its loss is the maximum-likelihood loss above
    | https://arxiv.org/abs/1905.07488

    | Neural Spline Flows (Durkan et al., 2019)
    | https://arxiv.org/abs/1906.04032

    | Masked Autoregressive Flow for Density Estimation (Papamakarios et al., 2017)
    | https://arxiv.org/abs/1705.07057

Example:
    >>> npe = NPE(2, 3, NPEConfig(num_transforms=2))
    >>> npe.sample((100,), x=torch.randn(3)).shape
    torch.Size([100, 2])
"""

from __future__ import annotations

import dataclasses

import torch
from sbi.neural_nets.estimators import NFlowsFlow
from sbi.neural_nets.net_builders import build_maf, build_nsf
from torch import Tensor

from .base import EstimatorConfig, PosteriorEstimator
from .config import require
from .support import BoxPrior

DENSITY_ESTIMATORS = ("nsf", "maf")


@dataclasses.dataclass(frozen=True)
class NPEConfig(EstimatorConfig):
    """Configuration of :class:`NPE`; the defaults are ``sbi.neural_nets.posterior_nn``'s.

    Arguments:
        density_estimator: ``nsf`` (rational-quadratic spline coupling layers) or ``maf``
            (masked affine autoregressive layers).
        hidden_features: Hidden units of each transform's conditioner network.
        num_transforms: Number of flow transforms.
        num_bins: Spline bins per dimension (``nsf`` only).
    """

    density_estimator: str = "nsf"
    hidden_features: int = 50
    num_transforms: int = 5
    num_bins: int = 10

    def validate(self) -> None:
        super().validate()
        require(
            self.density_estimator in DENSITY_ESTIMATORS,
            f"density_estimator must be one of {list(DENSITY_ESTIMATORS)}, "
            f"got {self.density_estimator!r}",
        )
        require(self.hidden_features >= 1, "hidden_features must be >= 1")
        require(self.num_transforms >= 1, "num_transforms must be >= 1")
        require(self.num_bins >= 1, "num_bins must be >= 1")


class NPE(PosteriorEstimator):
    """``sbi``'s NPE flow behind the :class:`PosteriorEstimator` interface.

    Arguments:
        theta_dim: Number of parameters :math:`D`.
        x_dim: Number of observed features :math:`L`.
        config: Hyperparameters.
        prior: Support of :math:`\\theta`.
    """

    family = "npe"
    log_prob_kind = "exact"
    config_class = NPEConfig
    config: NPEConfig

    def __init__(
        self,
        theta_dim: int,
        x_dim: int,
        config: NPEConfig | None = None,
        prior: BoxPrior | None = None,
    ) -> None:
        config = config or self.config_class()
        super().__init__(theta_dim, x_dim, config, prior)
        self.noise_features = theta_dim
        options = {"num_bins": config.num_bins} if config.density_estimator == "nsf" else {}
        build = build_nsf if config.density_estimator == "nsf" else build_maf
        # The builders read only the shapes of these batches once z-scoring is off.
        self.flow: NFlowsFlow = build(
            torch.zeros(2, theta_dim),
            torch.zeros(2, self.context_features),
            z_score_x="none",
            z_score_y="none",
            hidden_features=config.hidden_features,
            num_transforms=config.num_transforms,
            **options,
        )

    def _transform_noise(self, noise: Tensor, h: Tensor) -> Tensor:
        # nflows has no public "sample from this noise"; this is the call its own
        # Flow.sample makes after drawing noise (and what sbi's NFlowsFlow reads too).
        flow = self.flow.net
        u, _ = flow._transform.inverse(noise, context=flow._embedding_net(h))
        return u

    def _loss_u(self, u: Tensor, h: Tensor) -> Tensor:
        return self.flow.loss(u, h)

    def _log_prob_u(self, u: Tensor, h: Tensor) -> Tensor:
        return self.flow.log_prob(u.unsqueeze(0), h).squeeze(0)

"""Conditional posterior estimators :math:`q(\\theta \\mid x)` in pure PyTorch.

Everything here is usable without the service: build an estimator, :func:`fit` it on
simulations, draw from it, save and load it.

Example:
    >>> import torch
    >>> from sbiserve.models import EnergyFlow, TrainConfig, fit
    >>> theta = torch.randn(1024, 2)
    >>> x = theta + 0.1 * torch.randn(1024, 2)
    >>> flow = EnergyFlow(theta_dim=2, x_dim=2)
    >>> _ = fit(flow, theta, x, TrainConfig(max_epochs=5))
    >>> flow.sample((1000,), x=torch.zeros(2)).shape
    torch.Size([1000, 2])
"""

from .allocator import tune_malloc
from .base import EstimatorConfig, LogProbKind, PosteriorEstimator
from .energy_flow import EnergyFlow, EnergyFlowConfig
from .energy_score import energy_score
from .errors import (
    ConfigError,
    ManifestError,
    ModelError,
    NoDensityError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
    TrainingCancelled,
)
from .registry import build_estimator, family_names, get_family, split_options
from .semi_autoregressive_energy_flow import (
    SemiAutoregressiveEnergyFlow,
    SemiAutoregressiveEnergyFlowConfig,
)
from .serialization import load_estimator, read_manifest, save_estimator
from .serving import prepare_for_serving
from .support import BoxPrior
from .training import EpochInfo, FitResult, TrainConfig, fit, resolve_device

__all__ = [
    "BoxPrior",
    "ConfigError",
    "EnergyFlow",
    "EnergyFlowConfig",
    "EpochInfo",
    "EstimatorConfig",
    "FitResult",
    "LogProbKind",
    "ManifestError",
    "ModelError",
    "NoDensityError",
    "NonFiniteError",
    "OutOfSupportError",
    "PosteriorEstimator",
    "SemiAutoregressiveEnergyFlow",
    "SemiAutoregressiveEnergyFlowConfig",
    "ShapeError",
    "TrainConfig",
    "TrainingCancelled",
    "build_estimator",
    "energy_score",
    "family_names",
    "fit",
    "get_family",
    "load_estimator",
    "prepare_for_serving",
    "read_manifest",
    "resolve_device",
    "save_estimator",
    "split_options",
    "tune_malloc",
]

"""A job's family and hyperparameters, parsed once where the request comes in.

``POST /v1/jobs`` calls :func:`normalize` on the family and the flat options the user
sent; the job stores :meth:`JobOptions.to_dict` (``{"model": {...}, "training": {...}}``,
every option with its value, defaults included); the worker rebuilds the configurations
from that stored form with :func:`from_stored` and publishes the same dict as the model's
``hyperparameters``. So the job and its model show the same options, and the worker
trains with exactly what the route accepted.

``device`` is not among them: each worker trains on its own device (``SBISERVE_DEVICE``,
``sbiserve worker --device``), which the model's ``training.device`` records.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sbiserve.models import (
    BoxPrior,
    EstimatorConfig,
    ModelError,
    PosteriorEstimator,
    TrainConfig,
    build_estimator,
    family_names,
    get_family,
    split_options,
)

from .errors import InvalidInput

# Set by the worker, never by a job.
WORKER_OPTIONS = ("device",)


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """A family and its two configurations, checked."""

    family: str
    model: EstimatorConfig
    training: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        """The stored, JSON-ready form (the job's and the model's ``hyperparameters``)."""
        training = {k: v for k, v in self.training.to_dict().items() if k not in WORKER_OPTIONS}
        return {"model": self.model.to_dict(), "training": training}

    def build(self, theta_dim: int, x_dim: int, prior: BoxPrior | None) -> PosteriorEstimator:
        """An untrained estimator of the family with these options, its initial weights
        drawn from the training seed (so one job's options give one model anywhere)."""
        return build_estimator(
            self.family, theta_dim, x_dim, self.model, prior, seed=self.training.seed
        )


def normalize(
    family: str,
    hyperparameters: dict[str, Any],
    num_simulations: int | None = None,
    theta_dim: int | None = None,
) -> JobOptions:
    """Checks what a training request names, once: the family, then the flat options.

    Options not named take their defaults, for ``num_simulations`` and ``theta_dim``
    when given (the family's defaults may depend on the budget and the number of
    parameters: ``PosteriorEstimator.budget_defaults``).

    Raises:
        InvalidInput: Naming ``family`` for an unknown family, ``hyperparameters`` for an
            unknown option, a value of the wrong type or range, or ``device``.
    """
    # Refused rather than ignored: a user who asks for "cuda" would otherwise get a model
    # trained on whatever device the worker has, and believe it trained on the GPU.
    named = sorted(set(hyperparameters) & set(WORKER_OPTIONS))
    if named:
        raise InvalidInput(
            f"{', '.join(named)} is not a job option: each worker trains on its own device "
            "(SBISERVE_DEVICE, `sbiserve worker --device`); leave it out",
            "hyperparameters",
        )
    try:
        model, training = split_options(family, hyperparameters, num_simulations, theta_dim)
    except ModelError as e:  # Config names the option (null ones included)
        raise InvalidInput(
            str(e), "family" if family not in family_names() else "hyperparameters"
        ) from None
    return JobOptions(family, model, training)


def from_stored(family: str, stored: dict[str, Any], device: torch.device | str) -> JobOptions:
    """The options a job stored (:meth:`JobOptions.to_dict`), to train on ``device``.

    A job queued before this form existed stored the user's flat options: those go
    through :func:`normalize` as the route would now.
    """
    if set(stored) != {"model", "training"}:
        # Back then the worker overwrote a device the user named; it still does for them.
        options = normalize(family, {k: v for k, v in stored.items() if k not in WORKER_OPTIONS})
        return dataclasses.replace(
            options, training=dataclasses.replace(options.training, device=str(device))
        )
    return JobOptions(
        family,
        get_family(family).config_class.from_dict(stored["model"]),
        TrainConfig.from_dict({**stored["training"], "device": str(device)}),
    )

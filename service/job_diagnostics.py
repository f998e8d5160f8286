"""The worker's step after training: calibration diagnostics on the held-out split.

:func:`run_diagnostics` takes the rows :func:`~sbiserve.models.fit` held out for
validation, runs :func:`sbiserve.models.diagnostics.diagnose` on them with the service's
budget (``diagnostics_pairs``, ``diagnostics_draws``), and reports its progress like
training does: fields of the job hash and ``diagnostics`` events on the job's stream
(``{stage, done, total}``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sbiserve.models import PosteriorEstimator, TrainConfig, TrainingCancelled
from sbiserve.models.diagnostics import (
    DiagnosticsConfig,
    default_names,
    diagnose,
    held_out_indices,
)

from . import jobs
from .queue import Keys
from .settings import Settings

log = logging.getLogger("sbiserve.worker")


def run_diagnostics(
    redis: Any,
    keys: Keys,
    job_id: str,
    estimator: PosteriorEstimator,
    theta: np.ndarray,
    x: np.ndarray,
    train_config: TrainConfig,
    settings: Settings,
    names: Sequence[str],
    should_stop: Callable[[], bool],
) -> dict[str, Any] | None:
    """The diagnostics of a freshly trained model, JSON-ready, for its metadata.

    Arguments:
        redis: The worker's (synchronous) Redis client.
        keys: The service's key layout.
        job_id: The training job, whose hash and event stream get the progress.
        estimator: The trained model.
        theta: Every simulated parameter of the job's dataset, ``(N, D)``.
        x: Every simulated observation, ``(N, L)``.
        train_config: The training options (they fix the validation split).
        settings: ``diagnostics_pairs`` and ``diagnostics_draws`` bound the cost.
        names: Parameter names for the verdict.
        should_stop: The training loop's cancellation check (raises to stop).

    Returns:
        The report, ``{"error": ...}`` when the diagnostics themselves failed (the model
        is still published), or ``None`` when ``diagnostics_pairs`` is 0.
    """
    if settings.diagnostics_pairs == 0:
        return None
    config = DiagnosticsConfig(
        num_pairs=settings.diagnostics_pairs,
        num_draws=settings.diagnostics_draws,
        max_draws_per_pass=settings.sample_max_draws,
        seed=train_config.seed,
    )

    def progress(stage: str, done: int, total: int) -> None:
        pipe = redis.pipeline()
        jobs.diagnostics_progress(pipe, keys, job_id, stage, done, total)
        pipe.execute()

    rows = held_out_indices(theta.shape[0], train_config).numpy()
    try:
        report = diagnose(
            estimator,
            torch.as_tensor(theta[rows]),
            torch.as_tensor(x[rows]),
            config,
            names=names,
            progress=progress,
            should_stop=should_stop,
        )
    except TrainingCancelled:
        raise
    except (ValueError, RuntimeError, ArithmeticError, NotImplementedError) as e:
        # A model that trained but cannot be diagnosed (e.g. a degenerate held-out set)
        # is still worth publishing; the report says why it has no diagnostics.
        log.warning("diagnostics of job %s failed: %s", job_id, e)
        return {"error": f"{type(e).__name__}: {e}"}
    return report.to_dict()


def dataset_names(
    dataset: dict[str, Any], theta_dim: int, x_dim: int
) -> tuple[list[str], list[str]]:
    """The dataset's ``theta_names`` and ``x_names``, or ``theta_1..``, ``x_1..`` without."""
    theta_names = dataset.get("theta_names") or default_names("theta", theta_dim)
    x_names = dataset.get("x_names") or default_names("x", x_dim)
    return list(theta_names), list(x_names)

"""From an sbi prior and simulator to a served posterior: :func:`simulate_and_train`.

Simulation runs locally with sbi's ``simulate_for_sbi``; training and sampling run on the
service. Needs ``sbi`` (and so torch) installed next to the client.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .arrays import to_numpy
from .client import Client, box_prior
from .errors import InvalidInputError
from .posterior import RemotePosterior


def prior_bounds(prior: Any, theta_dim: int) -> dict[str, Any] | None:
    """The box support of a torch/sbi prior as the API's ``prior``, or None if unbounded.

    A ``BoxUniform`` gives its ``low``/``high``; any prior whose support is an interval,
    or half-bounded (e.g. ``positive`` for Gamma or LogNormal), gives those bounds; an
    unrecognized support counts as unbounded.

    Arguments:
        prior: A ``torch.distributions.Distribution`` (e.g. ``sbi.utils.BoxUniform``).
        theta_dim: Number of parameters (bounds are broadcast to it).
    """
    support: Any = getattr(prior, "support", None)
    while hasattr(support, "base_constraint"):  # constraints.independent(...)
        support = support.base_constraint
    low = getattr(support, "lower_bound", None)
    high = getattr(support, "upper_bound", None)
    if low is None and high is None:
        return None

    def side(bound: Any) -> list[float | None]:
        if bound is None:
            return [None] * theta_dim
        values = np.broadcast_to(to_numpy(bound, "prior").astype(np.float64), (theta_dim,))
        return [float(v) for v in values]

    return box_prior((side(low), side(high)))  # infinities -> null; NaN is refused


def simulate_and_train(
    client: Client,
    prior: Any,
    simulator: Callable[[Any], Any],
    num_simulations: int,
    family: str = "energy_flow",
    hyperparameters: Mapping[str, Any] | None = None,
    name: str | None = None,
    *,
    simulation_batch_size: int | None = 1,
    num_workers: int = 1,
    seed: int | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> RemotePosterior:
    """Simulates locally, uploads, trains on the service, waits; returns the posterior.

    Arguments:
        client: The service to train on.
        prior: An sbi/torch prior over theta; a box support (``BoxUniform``) is passed on
            so the model never draws outside it.
        simulator: An sbi simulator (a batch of theta tensors in, x tensors out; wrap a
            numpy one with ``sbi.utils.user_input_checks.process_simulator``).
        num_simulations: Number of ``(theta, x)`` pairs to simulate.
        family: The model family.
        hyperparameters: Family and training options (``max_epochs``...).
        name: Label of the dataset, job and model.
        simulation_batch_size, num_workers, seed: Passed to sbi's ``simulate_for_sbi``.
        progress: Show progress bars for simulation and training.
        timeout: Seconds to wait for training at most.

    Returns:
        The trained model as a :class:`RemotePosterior` (with ``.prior`` set).
    """
    from sbi.inference import simulate_for_sbi

    theta, x = simulate_for_sbi(
        simulator,
        prior,
        num_simulations,
        num_workers=num_workers,
        simulation_batch_size=simulation_batch_size,
        seed=seed,
        show_progress_bar=progress,
    )
    theta_rows = to_numpy(theta, "theta").reshape(num_simulations, -1)
    x_rows = to_numpy(x, "x").reshape(num_simulations, -1)
    valid = np.isfinite(x_rows).all(axis=1)
    if not valid.any():
        raise InvalidInputError("every simulation returned NaN or inf", field="x")
    if not valid.all():  # sbi drops these before training too
        warnings.warn(
            f"dropping {int((~valid).sum())} of {num_simulations} simulations with NaN/inf in x",
            stacklevel=2,
        )
        theta_rows, x_rows = theta_rows[valid], x_rows[valid]
    dataset = client.upload(theta_rows, x_rows, name=name)
    job = client.train(
        dataset,
        family=family,
        hyperparameters=hyperparameters,
        prior=prior_bounds(prior, theta_rows.shape[1]),
        name=name,
    )
    finished = client.wait(job, progress=progress, timeout=timeout)
    return RemotePosterior(client, finished["model_id"], prior=prior)

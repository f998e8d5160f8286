"""sbi 0.27's own estimators, run through sbi's public API, as baselines.

``npe_nsf`` and ``npe_maf`` are neural posterior estimation with a neural spline flow or
a masked autoregressive flow (``sbi.inference.NPE``); ``fmpe`` is flow-matching
posterior estimation (``sbi.inference.FMPE``, draws from an ODE solve) and ``npse``
neural posterior score estimation (``sbi.inference.NPSE``, a variance-exploding SDE,
draws from its reverse-time SDE: sbi's defaults). Options are sbi's own keyword arguments:
those of the network builder (``posterior_nn`` / ``posterior_flow_nn``, e.g.
``hidden_features``) and those of ``.train()`` (e.g. ``training_batch_size``); anything
not given keeps sbi's default. Draws go through ``build_posterior()``, so they are
rejected outside the prior's support exactly as an sbi user gets them.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import torch
from torch import Tensor, distributions

from bench.trained import Trained

# method -> (trainer class name in sbi.inference, network kind)
BASELINES: dict[str, tuple[str, str]] = {
    "npe_nsf": ("NPE", "nsf"),
    "npe_maf": ("NPE", "maf"),
    "fmpe": ("FMPE", "mlp"),
    "npse": ("NPSE", "mlp"),
}
# sbi's network builder per trainer (``sbi.neural_nets``).
_BUILDERS = {"NPE": "posterior_nn", "FMPE": "posterior_flow_nn", "NPSE": "posterior_score_nn"}

# A posterior that leaks nearly all its mass outside the prior makes rejection sampling
# crawl; past this many seconds per call we keep the draws we have (and record it).
MAX_SAMPLING_SECONDS = 300.0


class _NoTracker:
    """An sbi ``Tracker`` that records nothing.

    Without one, sbi writes TensorBoard logs under ``./sbi-logs`` on every training run.
    """

    log_dir: str | None = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Ignores a metric."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Ignores metrics."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Ignores parameters."""

    def add_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Ignores a figure."""

    def flush(self) -> None:
        """Nothing to flush."""


def _builder(name: str, build_options: dict[str, Any]) -> Any:
    """sbi's network builder for a baseline, with its options."""
    from sbi import neural_nets

    trainer, kind = BASELINES[name]
    return getattr(neural_nets, _BUILDERS[trainer])(model=kind, **build_options)


def _split_options(name: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits options into builder and ``.train()`` keyword arguments."""
    from sbi import inference

    trainer = getattr(inference, BASELINES[name][0])
    train_keys = set(inspect.signature(trainer.train).parameters) - {"self"}
    build = {k: v for k, v in options.items() if k not in train_keys}
    train = {k: v for k, v in options.items() if k in train_keys}
    return build, train


def _defaults(function: Any, given: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready keyword defaults of ``function`` overridden by ``given``."""
    plain = (bool, int, float, str, type(None))
    params = inspect.signature(function).parameters.values()
    found = {p.name: p.default for p in params if isinstance(p.default, plain)}
    return {**found, **given}


def train_baseline(
    name: str,
    theta: Tensor,
    x: Tensor,
    prior: distributions.Distribution,
    options: dict[str, Any],
    max_epochs: int | None,
    device: torch.device,
) -> Trained:
    """Trains an sbi baseline on ``(theta, x)``; the caller seeds torch.

    Arguments:
        name: A key of :data:`BASELINES`.
        theta: Parameters ``(N, D)``; ``x``: outputs ``(N, L)``.
        prior: The prior on ``device``.
        options: sbi keyword arguments (builder and ``.train()``).
        max_epochs: Cap on epochs unless ``options`` sets ``max_num_epochs``.
        device: Training and sampling device.
    """
    from sbi import inference

    trainer_name, kind = BASELINES[name]
    build_options, train_options = _split_options(name, options)
    if max_epochs is not None:
        train_options.setdefault("max_num_epochs", max_epochs)
    network_argument = "density_estimator" if trainer_name == "NPE" else "vf_estimator"
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer = getattr(inference, trainer_name)(
        prior=prior,
        device=str(device),
        show_progress_bars=False,
        tracker=_NoTracker(),
        **{network_argument: _builder(name, build_options)},
    )
    trainer.append_simulations(theta.to(device), x.to(device)).train(**train_options)
    posterior = trainer.build_posterior()
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start

    def sample(num: int, x_o: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {"show_progress_bars": False}
        if trainer_name == "NPE":
            kwargs.update(max_sampling_time=MAX_SAMPLING_SECONDS, return_partial_on_timeout=True)
        if x_o.ndim == 2:
            draws = posterior.sample_batched((num,), x=x_o.to(device), **kwargs)
        else:
            draws = posterior.sample((num,), x=x_o.to(device), **kwargs)
        return draws.cpu()

    builder_function = _BUILDERS[trainer_name]
    from sbi import neural_nets

    return Trained(
        sample=sample,
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        epochs=int(trainer.summary["epochs_trained"][-1]),
        hyperparameters={
            "sbi": f"{trainer_name}({kind})",
            "network": _defaults(getattr(neural_nets, builder_function), build_options)
            | {"model": kind},
            "train": _defaults(trainer.train, train_options),
        },
    )


def untrained_sampler(name: str, theta_dim: int, x_dim: int, device: torch.device) -> Any:
    """A freshly initialized sbi posterior for speed tests (standard normal prior).

    The network's z-scoring is fitted on 256 standard-normal pairs. An unbounded prior
    means no draw is rejected, so the timing is the network's alone.
    """
    from sbi.inference import DirectPosterior

    prior = distributions.MultivariateNormal(
        torch.zeros(theta_dim, device=device), torch.eye(theta_dim, device=device)
    )
    theta = torch.randn(256, theta_dim, device=device)
    x = torch.randn(256, x_dim, device=device)
    network = _builder(name, {})(theta, x).to(device)
    posterior = DirectPosterior(network, prior, device=str(device))

    def sample(num: int, x_o: Tensor) -> Tensor:
        return posterior.sample_batched((num,), x=x_o.to(device), show_progress_bars=False).cpu()

    return sample

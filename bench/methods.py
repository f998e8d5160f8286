"""Training every benchmarked method on one set of simulations, behind one interface.

A method is a sbiserve family name (anything :func:`sbiserve.models.family_names`
lists, discovered at run time) or one of sbi's baselines in :mod:`bench.baselines`.
A method may carry a tag, ``family:tag``, to run a variant with its own options under
its own name (``energy_flow:beta05`` with ``{"energy_flow:beta05": {"beta": 0.5}}``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch
from torch import Tensor, distributions

from bench import baselines
from bench.trained import Trained
from sbiserve.models import (
    BoxPrior,
    build_estimator,
    family_names,
    fit,
    prepare_for_serving,
    split_options,
)


@dataclasses.dataclass(frozen=True)
class Caps:
    """Training limits applied to every method unless its own options set them.

    Arguments:
        max_epochs: Upper bound on epochs (``None``: the method's default).
        max_seconds: Wall-clock bound on training; sbiserve families only, since sbi's
            training loop has no such option (``None``: none).
    """

    max_epochs: int | None = None
    max_seconds: float | None = None


def base_name(method: str) -> str:
    """The family or baseline a (possibly tagged) method name runs."""
    return method.split(":", 1)[0]


def default_methods() -> list[str]:
    """Every sbiserve family, then sbi's NPE with NSF and with MAF."""
    return [*family_names(), "npe_nsf", "npe_maf"]


def known_methods() -> list[str]:
    """Every untagged method name that :func:`train` accepts."""
    return [*family_names(), *baselines.BASELINES]


def options_for(method: str, hyperparameters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The options of ``method``: its base name's entry, overridden by its own entry."""
    options = dict(hyperparameters.get(base_name(method), {}))
    if method != base_name(method):
        options.update(hyperparameters.get(method, {}))
    return options


def check_methods(methods: list[str]) -> None:
    """Raises ``ValueError`` naming the known methods if one is unknown."""
    unknown = [m for m in methods if base_name(m) not in known_methods()]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {known_methods()}")


def _train_family(
    family: str,
    theta: Tensor,
    x: Tensor,
    box: BoxPrior,
    options: dict[str, Any],
    caps: Caps,
    device: torch.device,
    seed: int,
) -> Trained:
    """Builds and fits an sbiserve family with :func:`sbiserve.models.fit`."""
    defaults: dict[str, Any] = {"seed": seed, "device": str(device)}
    if caps.max_epochs is not None:
        defaults["max_epochs"] = caps.max_epochs
    if caps.max_seconds is not None:
        defaults["max_seconds"] = caps.max_seconds
    model_config, train_config = split_options(
        family, {**defaults, **options}, theta.shape[0], theta.shape[1]
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    estimator = build_estimator(
        family, theta.shape[1], x.shape[1], model_config, box, seed=train_config.seed
    )
    result = fit(estimator, theta, x, train_config)
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start
    # Drawn from the form the service's worker loads (masks folded, gradients off):
    # the same draws, at the speed a user gets.
    served = prepare_for_serving(estimator)

    @torch.no_grad()
    def sample(num: int, x_o: Tensor) -> Tensor:
        return served.sample((num,), x=x_o.to(device)).cpu()

    return Trained(
        sample=sample,
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        epochs=result.epochs,
        hyperparameters={
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "best_epoch": result.best_epoch,
            "kept_epoch": result.kept_epoch,
        },
    )


def train(
    method: str,
    theta: Tensor,
    x: Tensor,
    prior: distributions.Distribution,
    box: BoxPrior,
    options: dict[str, Any],
    caps: Caps,
    device: torch.device,
    seed: int,
) -> Trained:
    """Trains ``method`` on ``(theta, x)`` and returns its sampler.

    Arguments:
        method: A name from :func:`known_methods`, optionally tagged ``name:tag``.
        theta: Simulated parameters, shape ``(N, D)``, on the CPU.
        x: Simulator outputs, shape ``(N, L)``, on the CPU.
        prior: The prior as a torch distribution on ``device`` (for sbi).
        box: The prior support (for sbiserve families).
        options: Method options (sbiserve hyperparameters or sbi keyword arguments; a
            ``seed`` option replaces ``seed`` as an sbi baseline's training seed, as it
            does for the sbiserve families).
        caps: Training limits.
        device: Where to train and sample.
        seed: Seed of initialization and batching.
    """
    name = base_name(method)
    if name in baselines.BASELINES:
        options = dict(options)
        torch.manual_seed(options.pop("seed", seed))
        return baselines.train_baseline(name, theta, x, prior, options, caps.max_epochs, device)
    torch.manual_seed(seed)
    return _train_family(name, theta, x, box, options, caps, device, seed)

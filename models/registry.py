"""Family names and how to build an estimator from a name and a dict of options.

Families load lazily so that importing :mod:`sbiserve.models` does not import ``sbi``
(slow) unless the ``npe`` baseline is used.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from .base import EstimatorConfig, PosteriorEstimator
from .errors import ConfigError
from .support import BoxPrior
from .training import TrainConfig

# name -> "module:Class", relative to this package.
_FAMILIES: dict[str, str] = {
    "energy_flow": "energy_flow:EnergyFlow",
    "self_normalizing_flow": "self_normalizing_flow:SelfNormalizingFlow",
    "ebflow": "ebflow:EBFlow",
    "npe": "npe:NPE",
    "ffjord": "ffjord:FFJORD",
    "autoregressive_energy_machine": "autoregressive_energy_machine:AutoregressiveEnergyMachine",
    "semi_autoregressive_energy_flow": (
        "semi_autoregressive_energy_flow:SemiAutoregressiveEnergyFlow"
    ),
}


def register_family(name: str, target: str) -> None:
    """Adds a family under ``name``; ``target`` is ``"module:Class"`` in this package."""
    _FAMILIES[name] = target


def family_names() -> list[str]:
    """Names of every available family."""
    return list(_FAMILIES)


def get_family(name: str) -> type[PosteriorEstimator]:
    """Returns the estimator class of a family, or raises :class:`ConfigError`."""
    try:
        module, cls = _FAMILIES[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown family {name!r}; available: {family_names()}") from None
    family: type[PosteriorEstimator] = getattr(
        importlib.import_module(f".{module}", __package__), cls
    )
    return family


def split_options(
    family: str,
    options: dict[str, Any] | None,
    num_simulations: int | None = None,
    theta_dim: int | None = None,
) -> tuple[EstimatorConfig, TrainConfig]:
    """Splits one flat dict of hyperparameters into the family's and the training config.

    Arguments:
        family: A name from :func:`family_names`.
        options: Flat options; what is not named takes its default.
        num_simulations: The number of simulations the model will train on; when given,
            the family's :meth:`~PosteriorEstimator.budget_defaults` for it replace the
            class defaults of the options not named.
        theta_dim: The number of parameters, passed on to ``budget_defaults`` with the
            budget (the energy flow's network is narrower for one or two).

    Raises:
        ConfigError: For a key that belongs to neither, naming the known keys.
    """
    cls = get_family(family)
    named = dict(options or {})
    budget = cls.budget_defaults(num_simulations, theta_dim) if num_simulations else {}
    options = {**budget, **named}
    config_class = cls.config_class
    model_keys, train_keys = set(config_class.field_names()), set(TrainConfig.field_names())
    unknown = sorted(set(named) - model_keys - train_keys)
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for family {family!r}; model options: "
            f"{sorted(model_keys)}; training options: {sorted(train_keys)}"
        )
    model = config_class.from_dict({k: v for k, v in options.items() if k in model_keys})
    train = TrainConfig.from_dict({k: v for k, v in options.items() if k in train_keys})
    return model, train


def build_estimator(
    family: str,
    theta_dim: int,
    x_dim: int,
    config: EstimatorConfig | dict[str, Any] | None = None,
    prior: BoxPrior | dict[str, Any] | None = None,
    seed: int | None = None,
) -> PosteriorEstimator:
    """Builds an untrained estimator of ``family``.

    Arguments:
        family: A name from :func:`family_names`.
        theta_dim: Number of parameters.
        x_dim: Number of observed features.
        config: The family's configuration, or a dict of its options.
        prior: A :class:`BoxPrior` or its dict form; ``None`` for an unbounded prior.
        seed: Seed of the initial weights (drawn from a forked torch generator, so the
            global one is left as it was); ``None`` draws them from the global generator.
            The same seed gives the same weights in any process, which with
            :class:`~sbiserve.models.TrainConfig`'s ``seed`` makes a training run
            reproducible.
    """
    cls = get_family(family)
    if not isinstance(config, EstimatorConfig):
        config = cls.config_class.from_dict(config)
    elif not isinstance(config, cls.config_class):
        raise ConfigError(
            f"family {family!r} needs a {cls.config_class.__name__}, got {type(config).__name__}"
        )
    if isinstance(prior, dict):
        prior = BoxPrior.from_dict(prior)
    if seed is None:
        return cls(theta_dim, x_dim, config, prior)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(theta_dim, x_dim, config, prior)

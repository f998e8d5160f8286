"""sbi's estimators as baselines: each trains through sbi's API and draws inside the prior."""

from __future__ import annotations

import pytest
import torch
from torch import distributions

from bench.baselines import BASELINES, train_baseline


@pytest.mark.parametrize("name", ["npe_nsf", "fmpe", "npse"])
def test_each_baseline_trains_and_draws_inside_the_prior(name: str) -> None:
    torch.manual_seed(0)
    prior = distributions.Independent(distributions.Uniform(-torch.ones(2), torch.ones(2)), 1)
    theta = prior.sample((300,))
    x = theta + 0.1 * torch.randn_like(theta)
    trained = train_baseline(name, theta, x, prior, {}, 2, torch.device("cpu"))
    draws = trained.sample(50, torch.tensor([0.2, -0.3]))
    assert draws.shape == (50, 2) and torch.isfinite(draws).all()
    assert (draws.abs() <= 1).all()  # sbi rejects draws outside the prior's support
    assert trained.epochs >= 1 and trained.train_seconds > 0
    trainer, kind = BASELINES[name]
    assert trained.hyperparameters["sbi"] == f"{trainer}({kind})"
    assert trained.hyperparameters["train"]["max_num_epochs"] == 2


def test_a_seed_option_is_the_baselines_training_seed() -> None:
    """``seed`` in the options replaces the cell's seed, and is not passed on to sbi."""
    from bench.methods import Caps, train
    from sbiserve.models import BoxPrior

    torch.manual_seed(0)
    prior = distributions.Independent(distributions.Uniform(-torch.ones(2), torch.ones(2)), 1)
    theta = prior.sample((200,))
    x = theta + 0.1 * torch.randn_like(theta)
    box, caps, cpu = BoxPrior(low=(-1, -1), high=(1, 1)), Caps(max_epochs=1), torch.device("cpu")
    x_o = torch.tensor([0.2, -0.3])

    def draws(options: dict, seed: int) -> torch.Tensor:
        trained = train("npe_nsf", theta, x, prior, box, options, caps, cpu, seed)
        torch.manual_seed(7)
        return trained.sample(20, x_o)

    assert torch.equal(draws({"seed": 1}, 0), draws({}, 1))
    assert not torch.equal(draws({"seed": 1}, 0), draws({}, 0))

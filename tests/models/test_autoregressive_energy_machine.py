"""Behaviour of the autoregressive energy machine: its normalizer, its sampler, a short fit."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import TrainConfig, build_estimator, fit
from sbiserve.models.autoregressive_energy_machine import (
    AutoregressiveEnergyMachine,
    AutoregressiveEnergyMachineConfig,
    Conditionals,
)

TINY = {
    "hidden_features": [32],
    "energy_hidden": [32],
    "energy_features": 8,
    "components": 3,
    "sample_proposals": 200,
}


def shaped_1d(seed: int = 0) -> tuple[AutoregressiveEnergyMachine, torch.Tensor, Conditionals]:
    """A 1-D machine whose energy has visible structure, 4 contexts and their conditionals."""
    torch.manual_seed(seed)
    aem = build_estimator("autoregressive_energy_machine", 1, 2, TINY)
    assert isinstance(aem, AutoregressiveEnergyMachine)
    with torch.no_grad():
        aem.energy[-1][-1].weight.mul_(8)  # untrained energies are nearly flat
        h = aem.context(torch.randn(4, 2))
        c = aem.conditionals(torch.zeros(4, 1), h).dim(0)
    return aem, h, c


def quadrature(aem: AutoregressiveEnergyMachine, c: Conditionals) -> tuple[torch.Tensor, ...]:
    """log Z, mean and std of each normalized conditional, on a fine grid."""
    grid = torch.linspace(-30, 30, 12001)
    log_q = aem.log_unnormalized(grid.expand(c.phi.shape[0], -1), c.phi)
    log_z = torch.logsumexp(log_q, dim=-1) + math.log(grid[1] - grid[0])
    p = (log_q - torch.logsumexp(log_q, dim=-1, keepdim=True)).exp()
    mean = (p * grid).sum(-1)
    std = (p * (grid - mean[:, None]).square()).sum(-1).sqrt()
    return log_z, mean, std


@torch.no_grad()
def test_normalizer_estimate_matches_quadrature() -> None:
    aem, _, c = shaped_1d()
    log_z, _, _ = quadrature(aem, c)
    torch.manual_seed(1)
    estimate = aem.log_normalizer(c, 20_000)
    assert estimate.shape == (4,)
    assert torch.allclose(estimate, log_z, atol=0.03), (estimate, log_z)


@torch.no_grad()
def test_defensive_draws_bound_the_importance_weights() -> None:
    aem, _, c = shaped_1d()
    v = torch.linspace(-40, 40, 2001).expand(4, -1)  # far beyond the proposal's reach
    log_w = aem.log_unnormalized(v, c.phi) - aem.importance_log_prob(v, c)
    assert log_w.max() <= -math.log(aem.config.defensive_weight) + 1e-4


@torch.no_grad()
def test_estimate_variance_shrinks_with_more_proposals() -> None:
    aem, _, c = shaped_1d()
    log_z, _, _ = quadrature(aem, c)
    torch.manual_seed(2)
    few = torch.stack([aem.log_normalizer(c, 20) for _ in range(100)])
    many = torch.stack([aem.log_normalizer(c, 2000) for _ in range(100)])
    # Standard deviations fall as 1/sqrt(S): a factor 10 here; ask for more than 4.
    assert (few.std(0) > 4 * many.std(0)).all(), (few.std(0), many.std(0))
    # With 2000 draws the remaining bias is far below the Monte Carlo error of the mean.
    tolerance = 4 * many.std(0) / math.sqrt(100) + 1e-3
    assert ((many.mean(0) - log_z).abs() < tolerance).all(), (many.mean(0), log_z)
    # log of an unbiased estimate is biased low (Jensen), visibly so with 20 draws.
    assert (few.mean(0) < many.mean(0)).all()


@torch.no_grad()
def test_resampled_draws_follow_the_energy_not_the_proposal() -> None:
    aem, h, c = shaped_1d()
    _, mean, std = quadrature(aem, c)
    weights = c.logits.softmax(-1)
    proposal_mean = (weights * c.loc).sum(-1)
    proposal_var = (weights * (c.scale.square() + c.loc.square())).sum(-1) - proposal_mean**2
    rows = 2000
    noise = aem.draw_noise(rows * 4, torch.Generator().manual_seed(3))
    u = aem._transform_noise(noise, h.repeat(rows, 1)).reshape(rows, 4)
    assert ((u.mean(0) - mean).abs() < 0.1 * std).all(), (u.mean(0), mean)
    assert ((u.std(0) / std - 1).abs() < 0.07).all(), (u.std(0), std)
    # The check has teeth: the untrained proposal alone is far from the energy.
    assert (proposal_var.sqrt() < 0.5 * std).all(), (proposal_var.sqrt(), std)


@torch.no_grad()
def test_every_source_of_randomness_is_in_the_noise() -> None:
    torch.manual_seed(0)
    aem = build_estimator("autoregressive_energy_machine", 3, 2, {**TINY, "sample_proposals": 16})
    noise = aem.draw_noise(50, torch.Generator().manual_seed(0))
    assert noise.shape == (50, 3, 16, 3)
    assert ((noise[..., 0] >= 0) & (noise[..., 0] < 1)).all()
    h = aem.context(torch.randn(50, 2))
    first = aem._transform_noise(noise, h)
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(first, aem._transform_noise(noise, h))
    for channel in range(3):  # each channel matters
        other = noise.clone()
        other[..., channel] = aem.draw_noise(50)[..., channel]
        assert not torch.equal(first, aem._transform_noise(other, h)), channel


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="defensive_weight"):
        AutoregressiveEnergyMachineConfig(defensive_weight=1.0)
    with pytest.raises(ValueError, match="eval_proposals"):
        AutoregressiveEnergyMachineConfig(eval_proposals=0)


@pytest.mark.slow
def test_short_fit_recovers_a_correlated_gaussian_posterior() -> None:
    # theta ~ N(0, I2), x = theta_1 + theta_2 + 0.5 eps: the posterior is Gaussian with
    # mean 4x/9 per dimension, variances 5/9 and correlation -0.8, so the second
    # conditional depends on the first (the autoregression is exercised).
    torch.manual_seed(0)
    theta = torch.randn(1500, 2)
    x = theta.sum(-1, keepdim=True) + 0.5 * torch.randn(1500, 1)
    aem = build_estimator(
        "autoregressive_energy_machine",
        2,
        1,
        {**TINY, "hidden_features": [64, 64], "energy_features": 16, "sample_proposals": 100},
    )
    config = TrainConfig(
        max_epochs=25,
        batch_size=128,
        learning_rate=3e-3,
        ema_decay=0.0,
        lr_schedule="cosine",
        device="cpu",
    )
    fit(aem, theta, x, config)
    cov = torch.tensor([[5.0, -4.0], [-4.0, 5.0]]) / 9
    for x_o in (0.0, 1.5):
        posterior = torch.distributions.MultivariateNormal(torch.full((2,), 4 * x_o / 9), cov)
        draws = aem.sample((1000,), torch.tensor([x_o]), generator=torch.Generator().manual_seed(4))
        assert (draws.mean(0) - posterior.mean).abs().max() < 0.15, draws.mean(0)
        assert (draws.std(0) / posterior.stddev - 1).abs().max() < 0.12, draws.std(0)
        assert abs(torch.corrcoef(draws.T)[0, 1] + 0.8) < 0.08
        points = posterior.sample((200,))
        with torch.no_grad():
            error = aem.log_prob(points, torch.tensor([x_o])) - posterior.log_prob(points)
        assert error.abs().mean() < 0.3, error.abs().mean()

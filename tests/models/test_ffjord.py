"""FFJORD: its density normalizes, its Hutchinson loss is unbiased, draws match density."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import BoxPrior, ConfigError, TrainConfig, build_estimator, fit
from sbiserve.models.ffjord import FFJORD


def curved(theta_dim: int, x_dim: int, prior: BoxPrior | None = None) -> FFJORD:
    """An untrained flow with its output layer scaled up, so the map is far from identity."""
    torch.manual_seed(0)
    estimator = build_estimator("ffjord", theta_dim, x_dim, {"hidden_features": [16, 16]}, prior)
    with torch.no_grad():
        estimator.flow.transform.ode[-1].weight.mul_(8)
    assert isinstance(estimator, FFJORD)
    return estimator


def test_log_prob_normalizes_over_a_box_prior() -> None:
    estimator = curved(2, 1, BoxPrior(low=(0.0, -1.0), high=(1.0, 2.0))).eval()
    low, width = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 3.0])
    estimator.fit_standardization(torch.rand(200, 2) * width + low, torch.randn(200, 1))
    n = 60
    a = (torch.arange(n) + 0.5) / n
    grid = torch.stack(torch.meshgrid(a, a * 3 - 1, indexing="ij"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        density = estimator.log_prob(grid, torch.tensor([0.7])).exp()
    assert density.std() > 0.1 * density.mean()  # not the flat prior
    integral = density.sum() * (1 / n) * (3 / n)
    assert abs(integral - 1) < 0.02, integral


def test_hutchinson_loss_is_unbiased_for_the_exact_one() -> None:
    estimator = curved(3, 2)
    theta, x = torch.randn(4, 3), torch.randn(4, 2)
    with torch.no_grad():
        exact = estimator.eval().loss(theta, x)  # eval mode: exact trace
        estimates = estimator.train().loss(theta.repeat(500, 1), x.repeat(500, 1))
    estimates = estimates.reshape(500, 4)
    spread = estimates.std(0)
    assert (spread > 1e-3).all()  # the training loss really is stochastic
    error = (estimates.mean(0) - exact).abs() / (spread / math.sqrt(500))
    assert (error < 4).all(), (estimates.mean(0), exact, spread)


def test_fit_recovers_a_gaussian_posterior_and_draws_match_the_density() -> None:
    # theta ~ N(0, 1), x = theta + N(0, 0.5^2): the posterior is N(0.8 x, 0.2).
    torch.manual_seed(0)
    theta = torch.randn(512, 1)
    x = theta + 0.5 * torch.randn(512, 1)
    options = {"hidden_features": [32, 32], "atol": 1e-3, "rtol": 1e-3}
    estimator = build_estimator("ffjord", 1, 1, options)
    config = TrainConfig(max_epochs=3, batch_size=64, learning_rate=1e-2, ema_decay=0)
    fit(estimator, theta, x, config)

    x_o = torch.tensor([[0.0], [1.0], [-1.5]])
    grid = torch.linspace(-3.5, 3.5, 281)
    step = float(grid[1] - grid[0])
    with torch.no_grad():
        mass = estimator.log_prob(grid[:, None, None].expand(-1, 3, 1), x_o).exp() * step
        draws = estimator.sample((2000,), x_o, generator=torch.Generator().manual_seed(1))
    mean = (mass * grid[:, None]).sum(0)
    sd = ((mass * grid[:, None] ** 2).sum(0) - mean**2).sqrt()
    torch.testing.assert_close(mass.sum(0), torch.ones(3), atol=1e-2, rtol=0)
    # The density is the posterior, to within a short run's accuracy ...
    true_sd = math.sqrt(0.2)
    assert ((mean - 0.8 * x_o[:, 0]).abs() < 0.25 * true_sd).all(), mean
    assert ((sd / true_sd - 1).abs() < 0.2).all(), sd
    # ... and the draws follow the density (same weights, the inverse ODE).
    assert ((draws[..., 0].mean(0) - mean).abs() < 0.1 * true_sd).all(), draws.mean(0)
    assert ((draws[..., 0].std(0) / sd - 1).abs() < 0.05).all(), draws.std(0)


def test_draws_carry_gradients_in_eval_mode() -> None:
    estimator = curved(2, 2).eval()
    estimator.sample((8,), torch.randn(2)).square().sum().backward()
    for name, parameter in estimator.flow.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_an_rtol_float32_cannot_meet_is_refused() -> None:
    with pytest.raises(ConfigError, match="rtol must be >="):
        build_estimator("ffjord", 2, 2, {"rtol": 1e-7})
    with pytest.raises(ConfigError, match="train_rtol must be >="):
        build_estimator("ffjord", 2, 2, {"train_rtol": 1e-7})


def test_a_training_step_is_solved_to_the_training_tolerances_only() -> None:
    def flow(**options: float) -> FFJORD:
        # The exact trace in training too, so the two modes differ in tolerance only.
        config = {"hidden_features": [16, 16], "training_trace": "exact", **options}
        torch.manual_seed(0)
        estimator = build_estimator("ffjord", 2, 1, config)
        with torch.no_grad():
            estimator.flow.transform.ode[-1].weight.mul_(8)  # far from the identity
        assert isinstance(estimator, FFJORD)
        return estimator

    default, matched = flow(), flow(train_atol=1e-5, train_rtol=1e-5)  # same weights
    theta, x = torch.randn(8, 2), torch.randn(8, 1)
    with torch.no_grad():
        loose = default.train().loss(theta, x)  # train_atol = train_rtol = 1e-3
        tight = default.eval().loss(theta, x)  # atol = rtol = 1e-5
        same = matched.train().loss(theta, x)
    assert not torch.allclose(loose, tight, atol=1e-6)
    assert torch.allclose(loose, tight, atol=0.05)  # both near the same density
    assert torch.allclose(same, tight, atol=1e-5)

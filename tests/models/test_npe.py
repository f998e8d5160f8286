"""The ``npe`` family is sbi's flow, unchanged, behind our standardization and prior map."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import BoxPrior, ConfigError, TrainConfig, build_estimator, fit

SMALL = {"hidden_features": 16, "num_transforms": 2, "num_bins": 4}


@pytest.mark.parametrize("density_estimator", ["nsf", "maf"])
def test_log_prob_is_sbis_log_prob_plus_our_change_of_variables(density_estimator: str) -> None:
    torch.manual_seed(0)
    low, high = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 3.0])
    prior = BoxPrior(low=(0.0, -1.0), high=(1.0, None))
    options = {**SMALL, "density_estimator": density_estimator}
    estimator = build_estimator("npe", 2, 3, options, prior)
    theta = torch.rand(100, 2) * (high - low) + low
    x = torch.randn(100, 3) * 2 + 5
    estimator.fit_standardization(theta, x)

    # The maps written out by hand: logit for the bounded side, log for the half-open one.
    phi = torch.stack([torch.logit(theta[:, 0]), torch.log(theta[:, 1] + 1)], dim=-1)
    mean, std = phi.mean(0), phi.std(0)
    u = (phi - mean) / std
    h = (x - x.mean(0)) / x.std(0)
    log_jacobian = (
        -std.log().sum() - torch.log(theta[:, 0] * (1 - theta[:, 0])) - torch.log(theta[:, 1] + 1)
    )
    with torch.no_grad():
        expected = estimator.flow.log_prob(u.unsqueeze(0), h).squeeze(0) + log_jacobian
        got = estimator.log_prob(theta, x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("density_estimator", ["nsf", "maf"])
def test_draws_are_the_flow_inverse_of_the_given_noise(density_estimator: str) -> None:
    torch.manual_seed(0)
    estimator = build_estimator("npe", 3, 2, {**SMALL, "density_estimator": density_estimator})
    with torch.no_grad():  # move away from the near-identity initialization
        for parameter in estimator.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    h = torch.randn(50, 2)
    noise = torch.randn(50, 3)
    with torch.no_grad():
        theta = estimator.sample_from_context(h, noise)  # unbounded prior, unit scaling
        recovered = estimator.flow.inverse_transform(theta, h)
    torch.testing.assert_close(recovered, noise, rtol=1e-4, atol=1e-4)


def test_fit_recovers_a_correlated_gaussian_posterior() -> None:
    # theta ~ N(0, I_2), x = A theta + N(0, s^2 I_2): the posterior is Gaussian with
    # covariance (I + A^T A / s^2)^-1 (correlation -0.64 here) and mean Sigma A^T x / s^2.
    # Tolerances fit a 5-epoch run on 1,000 pairs; an untrained flow (the prior) is
    # 1.7 posterior standard deviations wide and uncorrelated.
    torch.manual_seed(0)
    a, s = torch.tensor([[1.0, 0.8], [0.0, 0.6]]), 0.5
    theta = torch.randn(1000, 2)
    x = theta @ a.T + s * torch.randn(1000, 2)
    estimator = build_estimator("npe", 2, 2, {"hidden_features": 32, "num_transforms": 2})
    config = TrainConfig(max_epochs=5, batch_size=100, learning_rate=1e-2, ema_decay=0)
    fit(estimator, theta, x, config)

    cov = torch.linalg.inv(torch.eye(2) + a.T @ a / s**2)
    sd = cov.diagonal().sqrt()
    x_o = torch.tensor([[0.5, -0.5], [1.5, 1.0]])
    means = x_o @ (cov @ a.T / s**2).T
    with torch.no_grad():
        draws = estimator.sample((4000,), x_o, generator=torch.Generator().manual_seed(1))
        lp_at_mean = estimator.log_prob(means, x_o)
    assert ((draws.mean(0) - means).abs() / sd < 0.3).all(), (draws.mean(0), means)
    assert ((draws.std(0) / sd - 1).abs() < 0.3).all(), (draws.std(0), sd)
    for i in range(2):
        corr = torch.corrcoef(draws[:, i].T)[0, 1]
        assert abs(corr - cov[0, 1] / sd.prod()) < 0.15, (i, corr)
    exact = -math.log(2 * math.pi) - 0.5 * torch.logdet(cov)
    assert ((lp_at_mean - exact).abs() < 0.35).all(), (lp_at_mean, exact)


def test_unknown_density_estimator_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="density_estimator"):
        build_estimator("npe", 2, 2, {"density_estimator": "mdn"})

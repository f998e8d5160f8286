"""EBFlow: sampling inverts the flow, the exact density, the score-matching objectives."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import ConfigError, build_estimator
from sbiserve.models.ebflow import EBFlow, EBFlowConfig

from .gaussian_fit import X_O, fit_gaussian


def random_flow(theta_dim: int = 2, x_dim: int = 3) -> EBFlow:
    """An untrained flow whose linear layers have determinants far from one."""
    torch.manual_seed(0)
    flow = EBFlow(theta_dim, x_dim, EBFlowConfig(hidden_features=(16,), transforms=3))
    with torch.no_grad():
        for k, linear in enumerate(flow.linears):
            linear.weight.mul_(1.5 + k).add_(0.3 * torch.randn_like(linear.weight))
            linear.bias.normal_()
    return flow


def grid_mass(flow: EBFlow, x: torch.Tensor) -> float:
    grid = torch.linspace(-6, 6, 241)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        return float(flow.log_prob(points, x).exp().sum() * (grid[1] - grid[0]) ** 2)


def test_sampling_inverts_the_forward_map() -> None:
    flow = random_flow(theta_dim=3)
    h = flow.context(torch.randn(50, 3))
    noise = torch.randn(50, 3)
    with torch.no_grad():
        u = flow._transform_noise(noise, h)
        z, _ = flow.to_noise(u, h)
    assert torch.allclose(z, noise, atol=1e-4)


def test_log_prob_adds_the_dropped_linear_log_dets_once() -> None:
    flow = random_flow()
    u, h = torch.randn(4, 2), flow.context(torch.randn(4, 3))
    with torch.no_grad():
        log_dets = sum(torch.linalg.slogdet(linear.weight).logabsdet for linear in flow.linears)
        assert abs(float(log_dets)) > 1  # dropping them would visibly break normalization
        assert torch.allclose(flow._log_prob_u(u, h), -flow.energy(u, h) + log_dets, atol=1e-5)
    for x in (torch.zeros(3), torch.tensor([1.0, -2.0, 0.5])):
        assert grid_mass(flow, x) == pytest.approx(1.0, abs=0.01)


def test_sliced_loss_is_unbiased_for_the_score_matching_objective() -> None:
    flow = random_flow()
    u, h = 0.5 * torch.randn(3, 2), flow.context(torch.randn(3, 3))
    exact = []
    for i in range(3):

        def energy(point: torch.Tensor, i: int = i) -> torch.Tensor:
            return flow.energy(point[None], h[i : i + 1])[0]

        grad = torch.autograd.functional.jacobian(energy, u[i])
        hessian = torch.autograd.functional.hessian(energy, u[i])
        # 1/2 |s|^2 + tr(ds/du) with s = -dE/du
        exact.append(0.5 * grad.square().sum() - hessian.trace())
    repeats = 5000
    torch.manual_seed(1)
    with torch.no_grad():  # the loss still differentiates through the score
        sliced = flow._loss_u(u.repeat(repeats, 1), h.repeat(repeats, 1))
    estimate = sliced.reshape(repeats, 3).mean(0)
    spread = sliced.reshape(repeats, 3).std(0) / math.sqrt(repeats)
    assert torch.all((estimate - torch.stack(exact)).abs() < 4 * spread + 1e-3)


def test_relu_is_rejected() -> None:
    with pytest.raises(ConfigError, match="relu"):
        build_estimator("ebflow", 2, 2, {"activation": "relu"})


@pytest.mark.parametrize(
    "denoising",
    [
        {"denoising_scale": 0},  # sliced score matching from the first step
        {"denoising_steps": 48},  # annealed from sigma = 1 over half the 96 steps
    ],
    ids=["sliced", "annealed"],
)
def test_score_matching_fits_a_gaussian_posterior(denoising: dict[str, float]) -> None:
    fitted = fit_gaussian("ebflow", {"hidden_features": [32], "transforms": 2, **denoising})
    result = fitted.result
    assert result.train_losses[-1] < result.train_losses[0] - 1
    assert result.best_val_loss < result.val_losses[0] - 0.5  # an NLL (see below)
    assert grid_mass(fitted.flow, X_O) == pytest.approx(1.0, abs=0.01)  # type: ignore[arg-type]
    assert fitted.kl < 0.05, fitted.kl
    assert fitted.draws_match()


def test_early_stopping_compares_the_exact_negative_log_likelihood() -> None:
    flow = random_flow(theta_dim=2, x_dim=3)
    theta, x = torch.randn(20, 2), torch.randn(20, 3)
    flow.fit_standardization(theta, x)
    with torch.no_grad():
        total = flow.validation_loss(theta, x) + flow.log_prob(theta[:, None], x).diagonal()
    # -log q(u) + log q(theta) = log |d u / d theta|, the same for every row
    assert torch.allclose(total, total[0].expand(20), atol=1e-4), total


def test_denoising_scale_falls_geometrically_then_hands_over_to_sliced_matching() -> None:
    flow = build_estimator("ebflow", 2, 2, {"denoising_scale": 0.8, "denoising_steps": 10})
    u, h = torch.randn(8, 2), torch.randn(8, 2)
    sigmas = []
    for _ in range(12):
        sigmas.append(flow.denoising_sigma())  # type: ignore[operator]
        flow.loss(u, h).mean().backward()  # a training step counts
    assert sigmas[0] == pytest.approx(0.8)
    assert sigmas[5] == pytest.approx(0.08)  # half way down two decades
    assert sigmas[9] == pytest.approx(0.8 * 0.01**0.9)
    assert sigmas[10:] == [0.0, 0.0]
    with torch.no_grad():
        flow.loss(u, h)  # evaluation without autograd is no training step
    assert int(flow.trained_steps) == 12


def test_denoising_fits_the_posterior_smoothed_by_the_noise_scale() -> None:
    # sigma held at 0.5 (in units of theta's spread, about 1 here): the fit's variance
    # is the posterior's (0.2) plus 0.25, not the posterior's.
    fitted = fit_gaussian(
        "ebflow",
        {
            "hidden_features": [32],
            "transforms": 2,
            "denoising_scale": 0.5,
            "denoising_steps": 10**9,
        },
    )
    smoothed_sd = math.sqrt(float(fitted.posterior.variance[0]) + 0.25)
    assert torch.allclose(fitted.draws.std(0), torch.tensor(smoothed_sd), rtol=0.12), (
        fitted.draws.std(0)
    )

"""The energy score: closed-form values, propriety, and a safe gradient at zero."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import ConfigError, energy_score
from sbiserve.models.energy_score import distance_power, mean_spread


def gaussian_es(mu: float, sigma: float, theta: float) -> float:
    """Closed form of ES_1 for q = N(mu, sigma^2) in one dimension."""
    z = (theta - mu) / sigma
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return sigma * (2 * pdf + z * (2 * cdf - 1)) - sigma / math.sqrt(math.pi)


@pytest.mark.parametrize(("mu", "sigma", "theta"), [(0.0, 1.0, 0.0), (1.0, 2.0, -0.5)])
def test_matches_closed_form_for_1d_gaussians(mu: float, sigma: float, theta: float) -> None:
    torch.manual_seed(0)
    draws = mu + sigma * torch.randn(2, 200_000, 1)  # m = 2, many replicates
    estimate = energy_score(draws, torch.full((200_000, 1), theta)).mean()
    assert estimate == pytest.approx(gaussian_es(mu, sigma, theta), abs=0.02)


def test_estimator_is_unbiased_for_any_m() -> None:
    torch.manual_seed(1)
    target = torch.zeros(50_000, 1)
    exact = gaussian_es(0.3, 1.5, 0.0)
    for m in (2, 5, 20):
        draws = 0.3 + 1.5 * torch.randn(m, 50_000, 1)
        assert energy_score(draws, target).mean() == pytest.approx(exact, abs=0.02)


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5])
def test_true_distribution_has_the_lowest_expected_score(beta: float) -> None:
    torch.manual_seed(2)
    n, m = 40_000, 8
    theta = torch.randn(n, 2)
    noise = torch.randn(m, n, 2)

    def expected(shift: float, scale: float) -> float:
        return float(energy_score(shift + scale * noise, theta, beta).mean())

    true = expected(0.0, 1.0)
    for shift, scale in [(0.3, 1.0), (0.0, 1.5), (0.0, 0.6), (0.3, 0.8)]:
        assert true < expected(shift, scale) - 0.005, (shift, scale)


def test_gradient_is_finite_at_zero_distance() -> None:
    draws = torch.zeros(3, 4, 2, requires_grad=True)
    score = energy_score(draws, torch.zeros(4, 2), beta=0.5).sum()
    score.backward()
    assert torch.isfinite(draws.grad).all()
    v = torch.zeros(5, requires_grad=True)
    distance_power(v, 0.5).backward()
    assert torch.equal(v.grad, torch.zeros(5))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="beta"):
        energy_score(torch.randn(2, 3, 1), torch.randn(3, 1), beta=2.0)
    with pytest.raises(ConfigError, match="at least 2"):
        energy_score(torch.randn(1, 3, 1), torch.randn(3, 1))


def test_mean_spread_matches_a_double_loop() -> None:
    torch.manual_seed(3)
    draws = torch.randn(5, 3, 2)
    for beta in (0.5, 1.0):
        expected = torch.stack(
            [
                sum(
                    (draws[j, i] - draws[k, i]).norm() ** beta
                    for j in range(5)
                    for k in range(5)
                    if j != k
                )
                / 20
                for i in range(3)
            ]
        )
        assert torch.allclose(mean_spread(draws, beta), expected, atol=1e-5)


def test_spread_weighting_makes_the_loss_scale_free() -> None:
    """Scaling a pair's posterior by c scales its energy score by c**beta; the weighted
    loss divides that back out, so narrow and wide posteriors weigh alike."""
    from sbiserve.models import EnergyFlow, EnergyFlowConfig

    flow = EnergyFlow(1, 1, EnergyFlowConfig(spread_weighting=True, num_draws=64))
    h = torch.zeros(2000, 1)
    u = torch.zeros(2000, 1)
    with torch.no_grad():
        flow.network.requires_grad_(False)
        loss_small = flow._loss_u(u, h).mean()
        last = flow.network[-1]
        last.weight.mul_(10.0)
        last.bias.mul_(10.0)
        loss_large = flow._loss_u(u, h).mean()
    # Unweighted, the score would grow by 10 ** 0.5 = 3.2x.
    assert float(loss_large / loss_small) == pytest.approx(1.0, rel=0.15)


def test_marginal_scores_are_each_coordinates_own_energy_score() -> None:
    from sbiserve.models.energy_score import marginal_energy_scores, marginal_spreads

    torch.manual_seed(4)
    draws, target = torch.randn(6, 3, 2), torch.randn(3, 2)
    for beta in (0.5, 1.0):
        per_coordinate = marginal_energy_scores(draws, target, beta)
        assert per_coordinate.shape == (3, 2)
        for j in range(2):
            alone = energy_score(draws[..., j : j + 1], target[:, j : j + 1], beta)
            assert torch.allclose(per_coordinate[:, j], alone, atol=1e-6)
            spread = mean_spread(draws[..., j : j + 1], beta)
            assert torch.allclose(marginal_spreads(draws, beta)[:, j], spread, atol=1e-6)


def test_the_marginal_scores_enter_the_training_loss_only() -> None:
    """A draw set whose joint score is fine but whose narrow coordinate is off pays for
    it with ``marginal_weight``; the validation score (plain energy score) does not move."""
    from sbiserve.models import EnergyFlow, EnergyFlowConfig

    torch.manual_seed(0)
    theta, x = torch.randn(128, 3), torch.randn(128, 2)
    losses = {}
    for weight in (0.0, 2.0):
        torch.manual_seed(1)
        flow = EnergyFlow(3, 2, EnergyFlowConfig(hidden_features=(8,), marginal_weight=weight))
        flow.fit_standardization(theta, x)
        torch.manual_seed(2)
        losses[weight] = (flow.loss(theta, x).mean(), flow.validation_loss(theta, x).mean())
    assert losses[2.0][0] > losses[0.0][0] + 0.5
    assert torch.allclose(losses[2.0][1], losses[0.0][1])
    with pytest.raises(ConfigError, match="marginal_weight"):
        EnergyFlowConfig(marginal_weight=-1.0)


def test_coordinate_scaling_makes_the_loss_blind_to_one_coordinates_scale() -> None:
    """Stretching one coordinate of every draw (and of the target) by 10 changes the
    spread-weighted score, whose distances mix both coordinates; measured in each
    coordinate's own spread, the score stays where it was."""
    from sbiserve.models import EnergyFlow, EnergyFlowConfig

    ratios = {}
    for scaling in (False, True):
        torch.manual_seed(0)
        config = EnergyFlowConfig(num_draws=64, coordinate_scaling=scaling, bounded_map="logit")
        flow = EnergyFlow(2, 1, config)
        h, u = torch.zeros(2000, 1), torch.zeros(2000, 2)
        with torch.no_grad():
            flow.network.requires_grad_(False)
            torch.manual_seed(1)
            before = flow._loss_u(u, h).mean()
            last = flow.network[-1]
            last.weight[1].mul_(10.0)
            last.bias[1].mul_(10.0)
            torch.manual_seed(1)
            after = flow._loss_u(u, h).mean()
        ratios[scaling] = float(after / before)
    assert abs(ratios[False] - 1.0) > 0.2
    assert ratios[True] == pytest.approx(1.0, rel=0.1)

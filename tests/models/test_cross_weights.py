"""Cross-fitted spread weights: each half of the draws weighted by the other half's spread."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import BoxPrior, ConfigError, EnergyFlow, EnergyFlowConfig
from sbiserve.models.energy_score import energy_score, mean_spread, truncated_energy_score

PRIOR = BoxPrior(low=(-2.0, -2.0, -2.0), high=(2.0, 2.0, 2.0))


def _flow(**options: object) -> EnergyFlow:
    config = EnergyFlowConfig(cross_weights=True, **options)  # type: ignore[arg-type]
    return EnergyFlow(3, 4, config, PRIOR)


def test_each_half_is_scored_with_the_other_halfs_weight() -> None:
    torch.manual_seed(0)
    flow = _flow(num_draws=4)
    raw, u = torch.randn(4, 6, 3), torch.randn(6, 3)
    folded = flow.theta_transform.fold_u(raw)  # scores and weights see the draws in the box
    scores = flow._cross_weighted_scores(raw, folded, u, None)
    first, second = folded[:2], folded[2:]
    expected = (
        energy_score(first, u, 0.5) / mean_spread(second, 0.5)
        + energy_score(second, u, 0.5) / mean_spread(first, 0.5)
    ) / 2
    assert torch.allclose(scores, expected)
    # The weights carry no gradient: the gradient is that of the scores at fixed weights.
    raw.requires_grad_(True)
    flow._cross_weighted_scores(raw, flow.theta_transform.fold_u(raw), u, None).sum().backward()
    moving = flow.theta_transform.fold_u(raw)
    fixed = (
        energy_score(moving[:2], u, 0.5) / mean_spread(second, 0.5)
        + energy_score(moving[2:], u, 0.5) / mean_spread(first, 0.5)
    ).sum() / 2
    (expected_grad,) = torch.autograd.grad(fixed, raw)
    assert raw.grad is not None
    assert torch.allclose(raw.grad, expected_grad)


def test_with_truncation_each_half_scores_its_draws_inside() -> None:
    torch.manual_seed(1)
    flow = EnergyFlow(
        2,
        4,
        EnergyFlowConfig(cross_weights=True, num_draws=8, truncation_tries=4),
        BoxPrior(low=(-2.0, -2.0), high=(2.0, 2.0)),
    )
    raw, u = torch.randn(8, 5, 2), torch.randn(5, 2)
    inside = torch.rand(8, 5) > 0.2
    scores = flow._cross_weighted_scores(raw, raw, u, inside)
    folded = flow.theta_transform.fold_u(raw)
    expected = (
        truncated_energy_score(raw[:4], u, inside[:4], 0.5) / mean_spread(folded[4:], 0.5)
        + truncated_energy_score(raw[4:], u, inside[4:], 0.5) / mean_spread(folded[:4], 0.5)
    ) / 2
    assert torch.allclose(scores, expected)


@pytest.mark.parametrize(
    "options",
    [
        {"num_draws": 2},
        {"num_draws": 5},
        {"num_draws": 4, "coordinate_scaling": True},
        {"num_draws": 4, "marginal_weight": 0.5},
        {"num_draws": 4, "spread_weighting": False},
    ],
)
def test_options_it_cannot_serve_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="cross_weights"):
        _flow(**options)


def test_it_trains_without_the_weights_extra_pass() -> None:
    torch.manual_seed(0)
    flow = _flow(num_draws=4, diffusion_steps=3, hidden_features=(16, 16))
    theta, x = torch.rand(32, 3) * 4 - 2, torch.randn(32, 4)
    flow.fit_standardization(theta, x)
    calls = []
    handle = flow.network[-1].register_forward_hook(lambda *_: calls.append(1))
    flow.loss(theta, x).mean().backward()
    handle.remove()
    assert len(calls) == 1  # the draws' pass only
    assert all(p.grad is not None for p in flow.network.parameters())

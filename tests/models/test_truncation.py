"""Truncation to the prior box: draws outside are drawn again, training scores those inside."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import (
    BoxPrior,
    ConfigError,
    EnergyFlow,
    EnergyFlowConfig,
    TrainConfig,
    build_estimator,
    fit,
    prepare_for_serving,
)
from sbiserve.models.energy_score import energy_score, truncated_energy_score

PRIOR = BoxPrior(low=(-1.0, 0.0), high=(1.0, None))  # two-sided, then one-sided


def test_the_truncated_score_is_the_score_of_the_draws_inside() -> None:
    torch.manual_seed(0)
    samples, target = torch.randn(6, 5, 2), torch.randn(5, 2)
    everything = torch.ones(6, 5, dtype=torch.bool)
    assert torch.allclose(
        truncated_energy_score(samples, target, everything), energy_score(samples, target)
    )
    inside = everything.clone()
    inside[4:, :3] = False  # the last two draws of the first three targets do not count
    moved = samples.clone()
    moved[4:, :3] += 100.0  # so moving them changes nothing
    scores = truncated_energy_score(moved, target, inside)
    assert torch.allclose(scores, truncated_energy_score(samples, target, inside))
    assert torch.allclose(scores[:3], energy_score(samples[:4, :3], target[:3]))
    assert torch.allclose(scores[3:], energy_score(samples[:, 3:], target[3:]))
    inside[1:, 0] = False  # one draw left: no estimate, no score
    assert truncated_energy_score(samples, target, inside)[0] == 0


def _flow(tries: int, inside: bool = False, **options) -> EnergyFlow:
    torch.manual_seed(0)
    config = EnergyFlowConfig(hidden_features=(16,), truncation_tries=tries, **options)
    flow = EnergyFlow(2, 1, config, PRIOR)
    flow.fit_standardization(
        torch.rand(100, 2) * torch.tensor([2.0, 3.0]) - torch.tensor([1.0, 0.0]),
        torch.randn(100, 1),
    )
    last = [m for m in flow.network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        if inside:  # narrow draws in the middle of the box: every first attempt lands
            last.weight.mul_(0.1)
            last.bias.copy_(torch.tensor([0.0, 0.0]).repeat(config.mixture_heads))
            return flow
        last.weight.mul_(4.0)  # wide draws, centred past the upper bound: many outside
        last.bias.add_(torch.tensor([1.5, 0.0]).repeat(config.mixture_heads))
    return flow


@pytest.mark.parametrize("options", [{}, {"mixture_heads": 2}, {"diffusion_steps": 2}])
def test_each_draw_takes_its_first_attempt_inside_the_box(options: dict) -> None:
    tries = 3
    flow = _flow(tries, **options)
    assert flow.noise_features == (1 + tries) * flow.attempt_features
    x = torch.tensor([0.3])
    noise = flow.draw_noise(400, torch.Generator().manual_seed(1))
    with torch.no_grad():
        draws = flow.sample_from_context(flow.context(x), noise)
        h = flow.context(x).expand(400, -1)
        width = flow.attempt_features
        attempts = [
            flow._attempt_phi(noise[:, a * width : (a + 1) * width], h) for a in range(tries + 1)
        ]
    inside = torch.stack([flow.theta_transform.inside_phi(phi) for phi in attempts])  # (T+1, N)
    assert 0.2 < inside[0].float().mean() < 0.9  # the first attempt misses often
    first = torch.where(inside.any(0), inside.float().argmax(0), tries)  # else the last, folded
    expected = flow.theta_transform.constrain(torch.stack(attempts)[first, torch.arange(400)])
    assert torch.allclose(draws, expected, atol=1e-6)
    assert bool(flow.theta_transform.contains(draws).all())
    served = prepare_for_serving(_flow(tries, **options))  # same weights
    with torch.inference_mode():
        served_draws = served.sample_from_context(served.context(x), noise)
    assert torch.allclose(served_draws, draws, atol=1e-5)
    assert bool(flow.theta_transform.contains(served_draws).all())


def test_validation_scores_the_samplers_draws_even_when_attempts_miss() -> None:
    flow = _flow(3)  # wide draws centred past the upper bound: many attempts miss
    theta = torch.tensor([[0.5, 1.0]]).repeat(64, 1)
    x = torch.full((64, 1), 0.3)
    torch.manual_seed(2)
    with torch.no_grad():
        scores = flow.validation_loss(theta, x)
        torch.manual_seed(2)  # the same noise, drawn by hand: the sampler's draws
        m = flow.config.num_draws
        drawn = flow.sample_from_context(flow.context(x).repeat(m, 1), flow.draw_noise(m * 64))
    u_draws = flow.theta_transform(drawn).reshape(m, 64, 2)
    assert torch.allclose(scores, energy_score(u_draws, flow.theta_transform(theta), 0.5))
    # The training score of the draws inside gives 0 to a pair with fewer than two of
    # its draws inside (the best score there is); the sampler's draws are all scored.
    assert bool((scores > 0).all())


def test_truncation_trains_and_draws_inside_the_box() -> None:
    torch.manual_seed(0)
    theta = torch.rand(256, 2) * torch.tensor([2.0, 3.0]) - torch.tensor([1.0, 0.0])
    x = theta[:, :1] + 0.1 * torch.randn(256, 1)
    flow = build_estimator(
        "energy_flow", 2, 1, {"truncation_tries": 2, "hidden_features": [16]}, PRIOR
    )
    fit(flow, theta, x, TrainConfig(max_steps=20, batch_size=64, seed=0))
    assert torch.isfinite(flow.validation_loss(theta[:32], x[:32])).all()
    with torch.no_grad():
        draws = flow.sample((200,), x=torch.tensor([0.5]))
    assert bool(flow.theta_transform.contains(draws).all())


def test_truncation_needs_a_box_and_one_block() -> None:
    with pytest.raises(ConfigError, match="truncation_tries"):
        EnergyFlowConfig(truncation_tries=-1)
    with pytest.raises(ConfigError, match="single block"):
        build_estimator(
            "semi_autoregressive_energy_flow", 4, 1, {"truncation_tries": 1, "blocks": 2}
        )
    plain = EnergyFlow(2, 1, EnergyFlowConfig(), PRIOR).noise_features
    # Nothing to truncate to: the logit map's draws always land, an unbounded prior has
    # no box. The option is then ignored (a default may carry it), not an error.
    for config, prior in [
        (EnergyFlowConfig(truncation_tries=4, bounded_map="logit"), PRIOR),
        (EnergyFlowConfig(truncation_tries=4), None),
    ]:
        flow = EnergyFlow(2, 1, config, prior)
        assert flow.truncation_tries == 0 and flow.noise_features == plain
    assert EnergyFlow(2, 1, EnergyFlowConfig(truncation_tries=4), PRIOR).truncation_tries == 4


@pytest.mark.parametrize("heads", [1, 4])
def test_when_every_first_attempt_lands_the_draws_are_those_attempts(heads: int) -> None:
    flow = _flow(3, inside=True, mixture_heads=heads)
    x = torch.tensor([0.3])
    noise = flow.draw_noise(300, torch.Generator().manual_seed(1))
    with torch.no_grad():
        first = flow._attempt_phi(noise[:, : flow.attempt_features], flow.context(x))
        assert bool(flow.theta_transform.inside_phi(first).all())
        draws = flow.sample_from_context(flow.context(x), noise)
    assert torch.allclose(draws, flow.theta_transform.constrain(first), atol=1e-6)
    served = prepare_for_serving(_flow(3, inside=True, mixture_heads=heads))
    with torch.inference_mode():  # the whole noise row read through zero weights
        assert torch.allclose(
            served.sample_from_context(served.context(x), noise), draws, atol=1e-5
        )
        one = served.sample((1,), x=x, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        again = flow.sample((1,), x=x, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(one, again, atol=1e-5)


def test_the_attempts_noise_is_one_fill_in_order() -> None:
    flow = _flow(4, mixture_heads=4)
    for num in (1, 3, 5000):  # below and above torch's vectorized fill
        whole = flow.draw_noise(num, torch.Generator().manual_seed(3))
        rows = flow._attempt_noise(num * 5, torch.Generator().manual_seed(3))
        assert whole.shape == (num, flow.noise_features)
        assert torch.equal(whole, rows.reshape(num, -1))

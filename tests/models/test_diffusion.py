"""Multi-step energy flows (``diffusion_steps``): the schedule's maths and the estimator."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import (
    BoxPrior,
    ConfigError,
    build_estimator,
    load_estimator,
    save_estimator,
    split_options,
)
from sbiserve.models.diffusion_schedule import alpha_bars, noised, posterior_step

PRIOR = BoxPrior(low=(-1.0, 0.0, None), high=(2.0, None, None))


def test_the_top_level_is_pure_noise_and_the_levels_decrease() -> None:
    for levels in (1, 2, 3, 6):
        bars = alpha_bars(levels)
        assert bars.shape == (levels,)
        assert bars[-1].item() == pytest.approx(0.0, abs=1e-7)
        assert (bars[1:] < bars[:-1]).all()
    assert alpha_bars(2)[0].item() == pytest.approx(0.5)


@pytest.mark.parametrize(("ab_t", "ab_s"), [(0.0, 0.5), (0.25, 0.75), (0.5, 0.9)])
def test_the_posterior_step_keeps_the_noising_marginal(ab_t: float, ab_s: float) -> None:
    """Noise a fixed ``u0`` to level t, step down to s: the draws must be distributed as
    ``u0`` noised straight to level s (mean sqrt(ab_s) u0, variance 1 - ab_s)."""
    gen = torch.Generator().manual_seed(0)
    u0 = torch.full((200_000, 1), 1.7)
    u_t = noised(u0, torch.tensor(ab_t), torch.randn(u0.shape, generator=gen))
    u_s = posterior_step(u_t, u0, ab_t, ab_s, torch.randn(u0.shape, generator=gen))
    assert u_s.mean().item() == pytest.approx(ab_s**0.5 * 1.7, abs=0.01)
    assert u_s.var().item() == pytest.approx(1 - ab_s, abs=0.01)
    # ... and it depends on u_t whenever the top level is not pure noise
    slope = torch.cov(torch.cat([u_t, u_s], dim=1).T)[0, 1].item()
    assert (slope > 0.05) == (ab_t > 0)


def make(levels: int = 3):
    torch.manual_seed(0)
    flow = build_estimator(
        "energy_flow", 3, 4, {"hidden_features": [32, 32], "diffusion_steps": levels}, PRIOR
    )
    theta = torch.stack([torch.rand(64) * 3 - 1, torch.rand(64) * 5, torch.randn(64)], dim=-1)
    flow.fit_standardization(theta, torch.randn(64, 4))
    return flow, theta


def test_a_draw_consumes_every_levels_noise_and_stays_in_the_prior() -> None:
    flow, _ = make(3)
    assert flow.noise_features == 3 * flow.step_noise + 2 * 3
    draws = flow.sample((500,), torch.randn(4), generator=torch.Generator().manual_seed(1))
    assert draws.shape == (500, 3) and torch.isfinite(draws).all()
    assert ((draws[:, 0] >= -1) & (draws[:, 0] <= 2) & (draws[:, 1] >= 0)).all()
    # changing only the last level's generator noise changes the draws
    noise = flow.draw_noise(10, torch.Generator().manual_seed(2))
    h = flow.context(torch.randn(4)).expand(10, -1)
    other = noise.clone()
    other[:, 2 * flow.step_noise : 3 * flow.step_noise] = 0
    with torch.no_grad():
        draws, changed = flow.sample_from_context(h, noise), flow.sample_from_context(h, other)
    assert not torch.allclose(draws, changed)


def test_same_seed_same_draws_after_save_load_and_in_serving_form(tmp_path) -> None:
    flow, theta = make(2)
    loss = flow.loss(theta, torch.randn(64, 4)).mean()
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters())
    x_o = torch.randn(4)
    with torch.no_grad():
        draws = flow.sample((50,), x_o, generator=torch.Generator().manual_seed(3))
    save_estimator(flow, tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    loaded.eval()
    with torch.inference_mode():
        again = loaded.sample((50,), x_o, generator=torch.Generator().manual_seed(3))
        loaded.fold_for_serving()
        served = loaded.sample((50,), x_o, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(draws, again)
    assert torch.allclose(draws, served, atol=1e-5)


def test_the_validation_score_draws_through_every_level() -> None:
    flow, theta = make(3)
    x = torch.randn(64, 4)
    with torch.no_grad():
        torch.manual_seed(5)
        score = flow.validation_loss(theta, x)
        torch.manual_seed(5)
        assert torch.allclose(score, flow.validation_loss(theta, x))
        # the top level's pass matters: break it and the score changes
        flow._alpha_bars[-1] = 0.1
        torch.manual_seed(5)
        assert not torch.allclose(score, flow.validation_loss(theta, x))


def test_the_semi_autoregressive_flow_refuses_diffusion_steps() -> None:
    with pytest.raises(ConfigError, match="one pass per block"):  # refused with the options
        split_options("semi_autoregressive_energy_flow", {"diffusion_steps": 2})
    with pytest.raises(ConfigError, match="diffusion_steps"):
        build_estimator("energy_flow", 2, 2, {"diffusion_steps": 0})

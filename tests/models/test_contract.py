"""One contract, every family: shapes, gradients, reparameterization, save/load, prior."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import (
    BoxPrior,
    NoDensityError,
    PosteriorEstimator,
    ShapeError,
    build_estimator,
    family_names,
    load_estimator,
    save_estimator,
)

# Small networks keep the contract fast; the families' defaults are exercised elsewhere.
SMALL = {
    "energy_flow": {"hidden_features": [32, 32]},
    "self_normalizing_flow": {"hidden_features": [16, 16], "transforms": 2, "bins": 4},
    "ebflow": {"hidden_features": [16, 16], "transforms": 2},
    "npe": {"hidden_features": 16, "num_transforms": 2, "num_bins": 4},
    "ffjord": {"hidden_features": [16, 16]},
    "autoregressive_energy_machine": {"hidden_features": [32, 32], "sample_proposals": 16},
    "semi_autoregressive_energy_flow": {"hidden_features": [32, 32], "blocks": 2},
}
THETA_DIM, X_DIM = 3, 4
PRIOR = BoxPrior(low=(-1.0, 0.0, None), high=(2.0, None, None))


def make(family: str, prior: BoxPrior | None = PRIOR) -> PosteriorEstimator:
    torch.manual_seed(0)
    estimator = build_estimator(family, THETA_DIM, X_DIM, SMALL.get(family, {}), prior)
    theta = torch.stack([torch.rand(64) * 3 - 1, torch.rand(64) * 5, torch.randn(64)], dim=-1)
    estimator.fit_standardization(theta, torch.randn(64, X_DIM) * 3 + 1)
    return estimator


@pytest.fixture(params=family_names())
def family(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_family_is_in_the_contract(family: str) -> None:
    assert family in SMALL, f"add {family} to SMALL so the contract stays fast"


def test_a_seed_gives_the_same_initial_weights_and_leaves_the_global_generator(
    family: str,
) -> None:
    def weights(seed: int, scramble: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(scramble)  # whatever state the caller's generator is in
        before = torch.random.get_rng_state()
        estimator = build_estimator(family, THETA_DIM, X_DIM, SMALL[family], PRIOR, seed=seed)
        assert torch.equal(torch.random.get_rng_state(), before)
        return estimator.state_dict()

    first, again, other = weights(3, 0), weights(3, 1), weights(4, 0)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_sample_shapes(family: str) -> None:
    estimator = make(family)
    assert estimator.family == family
    assert estimator.sample((), torch.randn(X_DIM)).shape == (THETA_DIM,)
    assert estimator.sample((5,), torch.randn(X_DIM)).shape == (5, THETA_DIM)
    assert estimator.sample((5, 2), torch.randn(7, X_DIM)).shape == (5, 2, 7, THETA_DIM)
    assert estimator.loss(torch.rand(6, THETA_DIM), torch.randn(6, X_DIM)).shape == (6,)


def test_wrong_x_is_a_named_error(family: str) -> None:
    estimator = make(family)
    with pytest.raises(ShapeError, match="4 feature"):
        estimator.sample((2,), torch.randn(3))
    with pytest.raises(ShapeError, match="x is required"):
        estimator.sample((2,))


def test_gradients_reach_every_parameter(family: str) -> None:
    estimator = make(family)
    theta = make(family).sample((32,), torch.randn(X_DIM)).detach()
    estimator.loss(theta, torch.randn(32, X_DIM)).mean().backward()
    for name, parameter in estimator.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_draws_are_reparameterized(family: str) -> None:
    estimator = make(family)
    if not estimator.reparameterized:
        pytest.skip(f"{family} draws by resampling; it declares reparameterized = False")
    draws = estimator.sample((16,), torch.randn(2, X_DIM))
    assert draws.requires_grad
    draws.square().sum().backward()
    touched = [p.grad is not None and p.grad.abs().sum() > 0 for p in estimator.parameters()]
    assert sum(touched) >= len(touched) // 2


def test_save_load_reproduces_draws(family: str, tmp_path) -> None:
    estimator = make(family).eval()
    manifest = save_estimator(estimator, tmp_path / "m", metrics={"c2st": 0.6})
    assert manifest["family"] == family and manifest["metrics"] == {"c2st": 0.6}
    loaded = load_estimator(tmp_path / "m")
    x = torch.randn(3, X_DIM)
    first = estimator.sample((50,), x, generator=torch.Generator().manual_seed(7))
    second = loaded.sample((50,), x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    assert loaded.prior == PRIOR
    other_seed = loaded.sample((50,), x, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(first, other_seed)


def test_draws_respect_the_box_prior(family: str) -> None:
    estimator = make(family)
    with torch.no_grad():
        # Push the output scale up so many draws would land outside without the map.
        estimator.theta_transform.standardize.std.mul_(50)
        draws = estimator.sample((2000,), torch.randn(2, X_DIM) * 10)
    assert torch.isfinite(draws).all()
    assert (draws[..., 0] >= -1).all() and (draws[..., 0] <= 2).all()
    assert (draws[..., 1] >= 0).all()
    assert draws[..., 2].std() > 1  # the unbounded dimension is left alone


def test_log_prob(family: str) -> None:
    estimator = make(family)
    theta = torch.tensor([[0.5, 1.0, 0.0], [5.0, 1.0, 0.0]])
    if estimator.log_prob_kind == "none":
        with pytest.raises(NoDensityError, match=family):
            estimator.log_prob(theta, torch.randn(2, X_DIM))
        return
    lp = estimator.log_prob(theta, torch.randn(2, X_DIM))
    assert lp.shape == (2,)
    assert math.isfinite(lp[0]) and lp[1] == -math.inf  # the second row is outside
    assert estimator.log_prob(theta[:1].expand(9, 3), torch.randn(X_DIM)).shape == (9,)


def test_repr_names_the_family(family: str) -> None:
    assert family in repr(make(family))


def test_serving_form_gives_the_same_draws_and_densities(family: str) -> None:
    from zuko.nn import MaskedLinear

    from sbiserve.models.serving import prepare_for_serving

    estimator = make(family)
    x = torch.randn(2, X_DIM)
    theta = torch.stack([torch.rand(5) * 3 - 1, torch.rand(5) * 5, torch.randn(5)], dim=-1)
    with torch.no_grad():
        before = estimator.sample((6,), x, generator=torch.Generator().manual_seed(1))
        density = estimator.log_prob_kind != "none"
        torch.manual_seed(2)  # the AEM's normalizer is an importance-sampling estimate
        lp_before = estimator.log_prob(theta, x[:1].expand(5, -1)) if density else None
    served = prepare_for_serving(estimator)
    assert not any(isinstance(m, MaskedLinear) for m in served.modules())
    assert not any(p.requires_grad for p in served.parameters()) and not served.training
    with torch.inference_mode():
        after = served.sample((6,), x, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # FFJORD's density needs autograd for its trace
        torch.manual_seed(2)
        lp_after = served.log_prob(theta, x[:1].expand(5, -1)) if density else None
    assert torch.allclose(before, after, atol=1e-5)
    if lp_before is not None:
        assert torch.allclose(lp_before, lp_after, atol=1e-4)

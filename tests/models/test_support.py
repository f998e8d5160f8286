"""Prior support maps and standardization."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import BoxPrior, ConfigError, OutOfSupportError
from sbiserve.models.support import ThetaTransform

PRIOR = BoxPrior(low=(-1.0, 0.0, None, None), high=(2.0, None, 3.0, None))


def inside(n: int) -> torch.Tensor:
    return torch.stack(
        [torch.rand(n) * 3 - 1, torch.rand(n) * 4, 3 - torch.rand(n) * 4, torch.randn(n)], -1
    ).double()


def test_round_trip_and_jacobian() -> None:
    transform = ThetaTransform(4, PRIOR).double()
    theta = inside(100)
    transform.fit(theta)
    u = transform(theta)
    assert torch.allclose(u.mean(0), torch.zeros(4, dtype=torch.double), atol=1e-6)
    assert torch.allclose(transform.inverse(u), theta, atol=1e-6)
    one = theta[:1]
    jac = torch.autograd.functional.jacobian(transform, one)[0, :, 0, :]
    expected = torch.linalg.slogdet(jac).logabsdet
    assert transform.log_abs_det_jacobian(one)[0] == pytest.approx(float(expected), abs=1e-6)


def test_out_of_support_names_the_row() -> None:
    transform = ThetaTransform(4, PRIOR)
    theta = inside(5).float()
    theta[3, 0] = 2.5
    with pytest.raises(OutOfSupportError, match="row 3"):
        transform.check_support(theta)


def test_prior_validation() -> None:
    with pytest.raises(ConfigError, match="same length"):
        BoxPrior(low=(0.0,), high=(1.0, 2.0))
    with pytest.raises(ConfigError, match="smaller"):
        BoxPrior(low=(1.0,), high=(1.0,))
    with pytest.raises(ConfigError, match="finite"):
        BoxPrior(low=(float("nan"),), high=(1.0,))
    assert BoxPrior.from_dict(PRIOR.to_dict()) == PRIOR


def test_fold_map_reflects_into_the_box() -> None:
    transform = ThetaTransform(4, PRIOR, bounded="fold")
    torch.manual_seed(0)
    theta = inside(500)
    transform.fit(theta)
    u = transform(theta)
    # Inside the box the fold changes nothing, and the round trip is exact.
    assert torch.allclose(transform.fold_u(u), u, atol=1e-6)
    assert torch.allclose(transform.inverse(u), theta, atol=1e-6)
    # Anywhere in R^D it lands inside, mirrored at each bound it crossed.
    wild = 5 * torch.randn(2000, 4).double()
    drawn = transform.inverse(wild)
    assert transform.contains(drawn).all()
    above = transform.inverse(transform(torch.tensor([[1.5, 1.0, 0.0, 0.0]]).double()))
    assert torch.allclose(above, torch.tensor([[1.5, 1.0, 0.0, 0.0]]).double(), atol=1e-6)
    phi = transform.fold(torch.tensor([[1.25, -0.5, -2.0, 7.0], [-0.25, 3.0, 1.0, -7.0]]))
    assert torch.allclose(phi, torch.tensor([[0.75, 0.5, 2.0, 7.0], [0.25, 3.0, 1.0, -7.0]]))
    with pytest.raises(ConfigError, match="not invertible"):
        transform.log_abs_det_jacobian(theta)
    with pytest.raises(ConfigError, match="bounded"):
        ThetaTransform(4, PRIOR, bounded="clip")


def test_outside_u_is_the_squared_distance_beyond_one_reflection() -> None:
    transform = ThetaTransform(4, PRIOR, bounded="fold").double()
    torch.manual_seed(0)
    transform.fit(inside(500))
    std = transform.standardize.std
    assert (transform.outside_u(transform(inside(50))) == 0).all()
    # Rescaled coordinates: [0, 1] on dim 0, [0, inf) on dims 1-2, unbounded dim 3.
    # Only dim 0 wraps, and only beyond one reflection ([-1, 2]) is a distance counted.
    phi = torch.tensor([[2.25, -5.0, -2.0, 7.0], [-0.5, 3.0, 1.0, -70.0]]).double()
    outside = transform.outside_u(transform.standardize(phi))
    expected = torch.stack([(0.25 / std[0]) ** 2, torch.zeros((), dtype=torch.double)])
    assert torch.allclose(outside, expected)
    logit = ThetaTransform(4, PRIOR).double()
    assert (logit.outside_u(100 * torch.ones(3, 4).double()) == 0).all()
    # band 0: any distance outside the box counts (-0.5 is 0.5 below dim 0's bound)
    outside = transform.outside_u(transform.standardize(phi), band=0.0)
    assert torch.allclose(outside, ((torch.tensor([1.25, 0.5]).double() / std[0]) ** 2))
    assert (transform.outside_u(transform(inside(50)), band=0.0) == 0).all()


def test_the_fold_penalty_enters_the_training_loss_only() -> None:
    from sbiserve.models import EnergyFlow, EnergyFlowConfig

    prior = BoxPrior(low=(-1.0,), high=(1.0,))
    torch.manual_seed(0)
    theta, x = torch.rand(64, 1) * 2 - 1, torch.randn(64, 1)
    losses = {}
    for penalty in (0.0, 1.0):
        torch.manual_seed(1)
        flow = EnergyFlow(1, 1, EnergyFlowConfig(hidden_features=(8,), fold_penalty=penalty), prior)
        flow.fit_standardization(theta, x)
        last = [m for m in flow.network.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias.fill_(20.0)  # every unfolded output far beyond one reflection
        torch.manual_seed(2)
        losses[penalty] = (flow.loss(theta, x).mean(), flow.validation_loss(theta, x).mean())
    # Outputs far outside the box pay the penalty in training, not in validation.
    assert losses[1.0][0] > losses[0.0][0] + 10.0
    assert torch.allclose(losses[1.0][1], losses[0.0][1])
    # Outputs half a box width past the upper bound: free within one reflection, not
    # with fold_band = 0.
    banded = {}
    for band in (0.0, 1.0):
        torch.manual_seed(1)
        config = EnergyFlowConfig(hidden_features=(8,), fold_band=band)
        flow = EnergyFlow(1, 1, config, prior)
        flow.fit_standardization(theta, x)
        last = [m for m in flow.network.modules() if isinstance(m, torch.nn.Linear)][-1]
        standardize = flow.theta_transform.standardize
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(float((1.5 - standardize.mean) / standardize.std))  # phi = 1.5
        torch.manual_seed(2)
        banded[band] = flow.loss(theta, x).mean()
    assert banded[0.0] > banded[1.0] + 1.0


def test_energy_flow_with_the_fold_draws_inside_and_reloads(tmp_path) -> None:
    from sbiserve.models import (
        EnergyFlow,
        EnergyFlowConfig,
        TrainConfig,
        fit,
        load_estimator,
        save_estimator,
    )

    prior = BoxPrior(low=(-1.0, 0.0), high=(1.0, None))
    config = EnergyFlowConfig(bounded_map="fold", hidden_features=(32, 32))
    flow = EnergyFlow(2, 2, config, prior)
    torch.manual_seed(0)
    theta = torch.stack([torch.rand(600) * 2 - 1, torch.rand(600) * 3], -1)
    fit(flow, theta, theta + 0.1 * torch.randn(600, 2), TrainConfig(max_epochs=2))
    draws = flow.sample((2000,), x=torch.tensor([0.99, 0.01]))
    assert flow.theta_transform.contains(draws).all()
    save_estimator(flow, tmp_path / "m")
    loaded = load_estimator(tmp_path / "m")
    assert loaded.theta_transform.bounded == "fold"
    x = torch.zeros(2)
    first = flow.sample((5,), x=x, generator=torch.Generator().manual_seed(3))
    again = loaded.sample((5,), x=x, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(first, again)


def test_an_energy_flow_saved_before_the_fold_loads_with_its_logit_map(tmp_path) -> None:
    """Manifests written before ``bounded_map`` existed describe logit-map models."""
    import json

    from sbiserve.models import EnergyFlow, EnergyFlowConfig, load_estimator, save_estimator
    from sbiserve.models.serialization import MANIFEST

    prior = BoxPrior(low=(-1.0,), high=(1.0,))
    flow = EnergyFlow(1, 1, EnergyFlowConfig(bounded_map="logit", hidden_features=(8,)), prior)
    flow.fit_standardization(torch.rand(50, 1) * 2 - 1, torch.randn(50, 1))
    save_estimator(flow, tmp_path / "old")
    manifest_path = tmp_path / "old" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for option in ("bounded_map", "spread_weighting", "noise", "fold_penalty"):
        del manifest["config"][option]
    manifest_path.write_text(json.dumps(manifest))
    loaded = load_estimator(tmp_path / "old")
    assert loaded.config.bounded_map == "logit" and loaded.theta_transform.bounded == "logit"
    assert loaded.config.spread_weighting is False and loaded.config.fold_penalty == 0.0
    new = EnergyFlow(1, 1, prior=prior)
    assert new.config.bounded_map == "fold" and new.theta_transform.bounded == "fold"


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_mixture_heads_pick_each_head_with_equal_odds(tmp_path, noise: str) -> None:
    from sbiserve.models import (
        EnergyFlow,
        EnergyFlowConfig,
        load_estimator,
        prepare_for_serving,
        save_estimator,
    )

    config = EnergyFlowConfig(
        hidden_features=(8,), mixture_heads=4, bounded_map="logit", noise=noise
    )
    torch.manual_seed(0)
    flow = EnergyFlow(2, 1, config)
    assert flow.noise_features == 2 * 2 + 1  # network noise, then one head selector
    last = [m for m in flow.network.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # head j always gives (j, -j): the draw names its head
        last.bias.copy_(torch.tensor([[j, -j] for j in range(4)], dtype=torch.float).flatten())
    draws = flow.sample((8000,), x=torch.zeros(1))
    assert torch.equal(draws[:, 1], -draws[:, 0])
    counts = torch.bincount(draws[:, 0].round().long(), minlength=4)
    assert counts.tolist() != [8000, 0, 0, 0] and (counts - 2000).abs().max() < 200
    save_estimator(flow, tmp_path / "m")
    again = load_estimator(tmp_path / "m")
    seed = torch.Generator().manual_seed(5)
    first = flow.sample((50,), x=torch.zeros(1), generator=seed)
    assert torch.equal(first, again.sample((50,), x=torch.zeros(1), generator=seed.manual_seed(5)))
    served = prepare_for_serving(again)  # the first layer split once, u inputs dropped
    with torch.inference_mode():
        drawn = served.sample((50,), x=torch.zeros(1), generator=seed.manual_seed(5))
    assert torch.allclose(first, drawn, atol=1e-5)


def test_sign_noise_replaces_each_parameters_first_features_by_signs(tmp_path) -> None:
    from sbiserve.models import (
        ConfigError,
        EnergyFlow,
        EnergyFlowConfig,
        load_estimator,
        prepare_for_serving,
        save_estimator,
    )

    config = EnergyFlowConfig(hidden_features=(8,), sign_noise=1, bounded_map="logit")
    torch.manual_seed(0)
    flow = EnergyFlow(2, 1, config)
    noise = flow.draw_noise(1000).view(1000, 2, 2)  # (draw, parameter, feature)
    assert set(noise[..., 0].unique().tolist()) == {-1.0, 1.0}
    assert noise[..., 1].unique().numel() == 1000 * 2  # the second stays Gaussian
    assert abs(float(noise[..., 0].mean())) < 0.1  # equal odds
    with pytest.raises(ConfigError, match="sign_noise"):
        EnergyFlowConfig(noise_per_dim=2, sign_noise=3)
    save_estimator(flow, tmp_path / "m")
    again = load_estimator(tmp_path / "m")
    assert again.config.sign_noise == 1
    seed = torch.Generator().manual_seed(5)
    first = flow.sample((50,), x=torch.zeros(1), generator=seed)
    assert torch.equal(first, again.sample((50,), x=torch.zeros(1), generator=seed.manual_seed(5)))
    served = prepare_for_serving(again)  # the first layer split once, u inputs dropped
    with torch.inference_mode():
        drawn = served.sample((50,), x=torch.zeros(1), generator=seed.manual_seed(5))
    assert torch.allclose(first, drawn, atol=1e-5)


@pytest.mark.parametrize(
    ("family", "options", "boxed"),
    [
        ("energy_flow", {}, False),
        ("semi_autoregressive_energy_flow", {}, False),
        # heads (selector read through zero weights) and a box (the fold's one addcmul)
        ("energy_flow", {"mixture_heads": 4}, True),
        ("energy_flow", {"diffusion_steps": 2}, True),  # levels: u stays u
        ("energy_flow", {"diffusion_steps": 2, "mixture_heads": 4, "sign_noise": 1}, True),
        ("semi_autoregressive_energy_flow", {"mixture_heads": 2}, True),
        # the logit map, bounds on one side, an embedding network
        ("energy_flow", {"bounded_map": "logit", "embedding_features": 3}, "one-sided"),
    ],
)
def test_serving_folds_the_observations_z_scoring_into_the_first_layer(
    family: str, options: dict, boxed: bool | str
) -> None:
    from sbiserve.models import BoxPrior, build_estimator, prepare_for_serving

    torch.manual_seed(0)
    prior = BoxPrior(low=[-2.0, 0.0, -1.0], high=[2.0, 3.0, 5.0]) if boxed else None
    if boxed == "one-sided":
        prior = BoxPrior(low=[-2.0, None, None], high=[None, 3.0, None])
    flow = build_estimator(family, 3, 2, {"hidden_features": [16, 16], **options}, prior=prior)
    theta = torch.rand(200, 3) * torch.tensor([4.0, 3.0, 6.0]) - torch.tensor([2.0, 0.0, 1.0])
    flow.fit_standardization(theta * 0.5, torch.randn(200, 2) * 5 + 3)  # std, mean not 1, 0
    x = torch.tensor([[4.0, -2.0], [1.0, 9.0]])
    with torch.no_grad():
        before = flow.sample((500,), x, generator=torch.Generator().manual_seed(1))
        one_before = flow.sample((1,), x[0], generator=torch.Generator().manual_seed(1))
    inputs = flow.network[0].in_features
    served = prepare_for_serving(flow)
    embedded = "embedding_features" in options  # the z-scoring feeds the embedding then
    assert isinstance(served.x_standardize, torch.nn.Identity) != embedded
    one_block = family == "energy_flow"  # u's inputs go: their weights are masked to zero
    assert served.network[0].in_features == inputs - (3 if one_block else 0)
    # One pass: the last layer gives the support map's coordinates (z-scoring folded in).
    assert served._outputs_phi == (one_block and "diffusion_steps" not in options)
    with torch.inference_mode():
        after = served.sample((500,), x, generator=torch.Generator().manual_seed(1))
        one = served.sample((1,), x[0], generator=torch.Generator().manual_seed(1))
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.allclose(one, one_before, atol=1e-5)  # one draw: the context broadcast
    with torch.inference_mode():  # broadcast (C,) and repeated (N, C) contexts agree
        h = served.context(x[0])
        noise = served.draw_noise(5, torch.Generator().manual_seed(2))
        broadcast = served.sample_from_context(h, noise)
        repeated = served.sample_from_context(h.expand(5, -1).clone(), noise)
    assert torch.allclose(broadcast, repeated, atol=1e-6)
    if prior is not None:
        assert bool(served.theta_transform.contains(after).all())
    again = prepare_for_serving(served)  # a second preparation changes nothing
    assert again.network[0].in_features == served.network[0].in_features
    with torch.inference_mode():
        twice = again.sample((500,), x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(after, twice)


@pytest.mark.parametrize("family", ["energy_flow", "semi_autoregressive_energy_flow"])
def test_the_contexts_part_of_the_first_layer_is_computed_once_per_context(family: str) -> None:
    from sbiserve.models import build_estimator, prepare_for_serving

    torch.manual_seed(0)
    flow = build_estimator(family, 3, 5, {"hidden_features": [16, 16]})
    flow.fit_standardization(torch.randn(200, 3), torch.randn(200, 5))
    first = flow.network[0]  # a MaskedLinear while training
    own = torch.randn(4, 6, first.in_features - flow.context_features)
    h = torch.randn(6, flow.context_features)
    # The whole layer on [own, h] for every draw ...
    whole = first(torch.cat([own, h.expand(4, *h.shape)], dim=-1))
    # ... equals the split layer with h broadcast over the draws, and with one context
    # repeated by expand (computed from its single row).
    assert torch.allclose(flow._first_layer(own, h), whole, atol=1e-6)
    one = h[:1].expand(6, -1)
    assert torch.allclose(
        flow._first_layer(own[0], one), first(torch.cat([own[0], one], dim=-1)), atol=1e-6
    )
    served = prepare_for_serving(flow)  # a plain Linear once the masks are folded
    own = torch.randn(7, served.network[0].in_features - served.context_features)
    h = torch.randn(1, served.context_features).expand(7, -1)
    expected = served.network[0](torch.cat([own, h], dim=-1))
    assert torch.allclose(served._first_layer(own, h), expected, atol=1e-6)

"""Self normalizing flow: the surrogate gradients, the learned inverse, a fitted posterior."""

from __future__ import annotations

import pytest
import torch

from sbiserve.models import ConfigError, build_estimator
from sbiserve.models.self_normalizing_flow import SelfNormLinear, surrogate_log_abs_det

from .gaussian_fit import X_O, fit_gaussian


def well_conditioned(dim: int) -> torch.Tensor:
    return torch.eye(dim) + 0.3 * torch.randn(dim, dim)


def test_surrogate_log_det_is_exact_in_value_with_the_paper_gradients() -> None:
    torch.manual_seed(0)
    weight = well_conditioned(4).requires_grad_()
    inverse = torch.randn(4, 4).requires_grad_()  # deliberately not W^-1
    value = surrogate_log_abs_det(weight, inverse)
    value.backward()
    assert value.item() == pytest.approx(torch.linalg.slogdet(weight).logabsdet.item(), abs=1e-5)
    assert torch.allclose(weight.grad, inverse.T)  # R^T in place of W^-T
    assert torch.allclose(inverse.grad, -weight.T)  # -W^T in place of -R^-T


def test_surrogate_layer_gradients_match_exact_ones_when_r_is_the_inverse() -> None:
    torch.manual_seed(1)
    layer = SelfNormLinear(3)
    with torch.no_grad():
        layer.weight.copy_(well_conditioned(3))
        layer.inverse_weight.copy_(torch.linalg.inv(layer.weight))
        layer.bias.normal_()
    v = torch.randn(8, 3, requires_grad=True)
    g = torch.randn(8, 3)
    ((layer(v, surrogate=True) * g).sum() - layer.log_abs_det(surrogate=True)).backward()

    # W-form and R-form of the same objective, differentiated exactly.
    weight = layer.weight.detach().requires_grad_()
    v_exact = v.detach().requires_grad_()
    w_form = (g * (v_exact @ weight.T)).sum() - torch.linalg.slogdet(weight).logabsdet
    w_form.backward()
    inverse = layer.inverse_weight.detach().requires_grad_()
    z = v.detach() @ torch.linalg.inv(inverse).T
    r_form = (g * z).sum() + torch.linalg.slogdet(inverse).logabsdet
    r_form.backward()

    assert torch.allclose(v.grad, v_exact.grad, atol=1e-5)
    assert torch.allclose(layer.weight.grad, weight.grad, atol=1e-4)
    assert torch.allclose(layer.inverse_weight.grad, inverse.grad, atol=1e-4)


def test_reconstruction_makes_the_surrogate_gradient_the_true_one() -> None:
    torch.manual_seed(2)
    layer = SelfNormLinear(4)
    with torch.no_grad():
        layer.weight.copy_(well_conditioned(4))
        layer.inverse_weight.copy_(torch.eye(4))
    true_gradient = torch.linalg.inv(layer.weight.detach()).T
    before = (layer.inverse_weight.detach().T - true_gradient).abs().max()
    optimizer = torch.optim.Adam([layer.inverse_weight], lr=0.02)
    for _ in range(400):
        optimizer.zero_grad()
        layer.reconstruction(torch.randn(64, 4)).mean().backward()
        optimizer.step()
    weight = layer.weight.detach().requires_grad_()
    surrogate_log_abs_det(weight, layer.inverse_weight.detach()).backward()
    assert before > 0.3
    assert (weight.grad - true_gradient).abs().max() < 0.01


def test_reconstruction_does_not_reach_earlier_layers() -> None:
    layer = SelfNormLinear(3)
    v = torch.randn(5, 3, requires_grad=True)
    layer.reconstruction(v * 2).sum().backward()
    assert v.grad is None


def test_bad_bins_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bins"):
        build_estimator("self_normalizing_flow", 2, 2, {"bins": 1})


def test_trained_flow_has_an_exact_density_close_to_the_analytic_posterior() -> None:
    fitted = fit_gaussian(
        "self_normalizing_flow", {"hidden_features": [32], "transforms": 2, "bins": 0}
    )
    assert fitted.result.best_val_loss < fitted.result.val_losses[0] - 0.3
    grid = torch.linspace(-4, 4, 161)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        mass = fitted.flow.log_prob(points, X_O).exp().sum() * (grid[1] - grid[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.01)  # the density is normalized
    assert fitted.kl < 0.05, fitted.kl
    # Draws run backwards through W^-1 (the default), so they follow the density; here
    # R W ~ I as well, which draws through R (the paper's way) rely on.
    for linear in fitted.flow.linears:  # type: ignore[union-attr]
        assert (linear.inverse_weight @ linear.weight - torch.eye(2)).abs().max() < 0.02
    assert fitted.draws_match()


def test_exact_inverse_undoes_the_layer_where_the_learned_one_does_not() -> None:
    torch.manual_seed(3)
    layer = SelfNormLinear(4)
    with torch.no_grad():
        layer.weight.copy_(well_conditioned(4))
        layer.bias.normal_()  # R is still the start's W^T: no longer an inverse
    v = torch.randn(2, 7, 4)  # any leading shape
    assert torch.allclose(layer.exact_inverse(layer(v)), v, atol=1e-5)
    assert not torch.allclose(layer.inverse(layer(v)), v, atol=1e-2)


def test_sampling_inverse_picks_the_layers_inverse() -> None:
    options = {"hidden_features": [8], "transforms": 2, "bins": 0}
    exact = build_estimator("self_normalizing_flow", 3, 2, options)
    learned = build_estimator(
        "self_normalizing_flow", 3, 2, {**options, "sampling_inverse": "learned"}
    )
    learned.load_state_dict(exact.state_dict())
    with torch.no_grad():
        for linear in (*exact.linears, *learned.linears):  # type: ignore[union-attr]
            linear.weight.add_(0.3 * torch.eye(3))  # R no longer inverts W
    h = exact.context(torch.randn(200, 2))
    noise = torch.randn(200, 3)
    with torch.no_grad():
        a = exact._transform_noise(noise, h)
        b = learned._transform_noise(noise, h)
        # Mapped forward, draws through W^-1 land back on their noise, so log_prob is
        # their density; draws through R do not.
        for u, close in ((a, True), (b, False)):
            for linear, coupling in zip(exact.linears, exact.couplings, strict=True):
                u = coupling(h)(linear(u))
            assert torch.allclose(u, noise, atol=1e-4) == close
    with pytest.raises(ConfigError, match="sampling_inverse"):
        build_estimator("self_normalizing_flow", 2, 2, {"sampling_inverse": "solve"})

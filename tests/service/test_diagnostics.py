"""Calibration diagnostics (:mod:`sbiserve.models.diagnostics`), without Redis.

The linear-Gaussian problem has a closed-form posterior: prior theta ~ N(0, I_2),
x = A theta + N(0, s^2 I_3). A model trained on it comes out calibrated; the same draws
shrunk around their mean (an over-confident model) are flagged, in words.
"""

from __future__ import annotations

import json

import pytest
import torch

from sbiserve.models import TrainConfig, build_estimator, fit
from sbiserve.models.diagnostics import (
    DiagnosticsConfig,
    calibration,
    diagnose,
    held_out_indices,
    tarp_curve,
)

A = torch.tensor([[1.0, 0.5], [-0.3, 1.0], [0.8, -0.6]])
NOISE = 0.5
CONFIG = TrainConfig(
    max_epochs=15,
    batch_size=128,
    learning_rate=2e-3,
    lr_schedule="cosine",
    ema_decay=0.99,
    min_steps=0,
    seed=0,
)


def simulate(num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    theta = torch.randn(num, 2, generator=generator)
    return theta, theta @ A.T + NOISE * torch.randn(num, 3, generator=generator)


def exact_draws(x: torch.Tensor, num: int, shrink: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Draws ``(num, N, 2)`` from the exact posterior, their spread times ``shrink``."""
    cov = torch.linalg.inv(torch.eye(2) + A.T @ A / NOISE**2)
    mean = x @ (cov @ A.T / NOISE**2).T
    noise = torch.randn(num, x.shape[0], 2, generator=torch.Generator().manual_seed(seed))
    return mean + shrink * noise @ torch.linalg.cholesky(cov).T


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small energy flow trained on 2,000 simulations, and its 200 held-out pairs."""
    theta, x = simulate(2000, seed=0)
    estimator = build_estimator("energy_flow", 2, 3, {"hidden_features": [64, 64]})
    fit(estimator, theta, x, CONFIG)
    held_out = held_out_indices(2000, CONFIG)
    return estimator, theta[held_out], x[held_out]


def test_a_trained_model_is_calibrated(trained: tuple) -> None:
    estimator, theta, x = trained
    report = diagnose(estimator, theta, x, names=["slope", "offset"])
    assert report.num_pairs == 200 and report.num_draws == 256
    assert min(report.sbc_p_values) > 1e-3, report.sbc_p_values
    assert report.tarp_area < 0.05, report.tarp_area
    assert abs(report.tarp_atc) < 0.05
    assert report.findings == [], report.verdict
    assert report.verdict.startswith("calibrated")
    assert all(sum(counts) == 200 for counts in report.rank_counts)
    assert len(report.rank_counts[0]) == 16
    assert report.tarp_alpha[0] == 0 and report.tarp_alpha[-1] == 1
    assert report.tarp_coverage[-1] == pytest.approx(1.0)
    assert 0 < report.energy_score < 1  # posterior sd about 0.3 per parameter
    assert report.nll is None  # a generator: no density
    assert report.parameter_names == ["slope", "offset"]
    json.dumps(report.to_dict(), allow_nan=False)


def test_an_over_confident_model_is_flagged(trained: tuple) -> None:
    estimator, theta, x = trained
    with torch.no_grad():
        draws = estimator.sample((256,), x, generator=torch.Generator().manual_seed(0))
    shrunk = draws.mean(0) + 0.5 * (draws - draws.mean(0))
    report = calibration(shrunk, theta, ["theta_1", "theta_2"])
    assert max(report.sbc_p_values) < 1e-4
    assert report.tarp_atc < -0.03
    assert any(f.startswith("over-confident in theta_1") for f in report.findings)
    assert any(f.startswith("over-confident in theta_2") for f in report.findings)
    assert "over-confident overall" in report.verdict
    # U-shaped histograms: the outer bins hold far more than their share.
    counts = report.rank_counts[0]
    assert counts[0] + counts[-1] > 4 * sum(counts) / len(counts)


def test_exact_posterior_draws_are_calibrated_and_wide_ones_are_under_confident() -> None:
    theta, x = simulate(400, seed=1)
    assert calibration(exact_draws(x, 256), theta).findings == []
    wide = calibration(exact_draws(x, 256, shrink=2.0), theta)
    assert any(f.startswith("under-confident in theta_1") for f in wide.findings), wide.verdict


def test_a_biased_model_is_named_biased() -> None:
    theta, x = simulate(400, seed=2)
    draws = exact_draws(x, 256)
    draws[..., 1] -= 0.3  # about one posterior standard deviation too low
    report = calibration(draws, theta)
    assert any(f.startswith("biased low in theta_2") for f in report.findings), report.verdict
    assert not any("theta_1" in f for f in report.findings)


def test_tarp_curve_of_exact_draws_follows_the_diagonal() -> None:
    theta, x = simulate(1000, seed=3)
    alpha, ecp = tarp_curve(exact_draws(x, 200).double(), theta.double())
    assert alpha.shape == ecp.shape == (101,)
    assert (ecp - alpha).abs().max() < 0.08


def test_held_out_rows_are_the_validation_split() -> None:
    rows = held_out_indices(2000, CONFIG)
    assert rows.shape == (200,)
    assert torch.equal(rows, held_out_indices(2000, CONFIG))
    assert len(set(rows.tolist())) == 200
    # The validation loss of the weights fit kept is reproduced exactly on these rows,
    # and only on them.
    from sbiserve.models.training import _mean_loss

    theta, x = simulate(300, seed=5)
    config = TrainConfig(max_epochs=2, min_steps=0, seed=4, validation_fraction=0.2)
    estimator = build_estimator("energy_flow", 2, 3, {"hidden_features": [16, 16]})
    result = fit(estimator, theta, x, config)
    kept = result.val_losses[result.kept_epoch - 1]
    rows = held_out_indices(300, config)
    assert _mean_loss(estimator, theta[rows], x[rows], 4096, 5)[0] == kept
    other = held_out_indices(300, TrainConfig(seed=5, validation_fraction=0.2))
    assert _mean_loss(estimator, theta[other], x[other], 4096, 5)[0] != kept


def test_density_families_get_a_held_out_nll() -> None:
    theta, x = simulate(300, seed=4)
    estimator = build_estimator("npe", 2, 3, {})
    fit(estimator, theta, x, TrainConfig(max_epochs=2, min_steps=0))
    report = diagnose(estimator, theta[:50], x[:50], DiagnosticsConfig(num_draws=32))
    assert report.nll is not None and report.nll == report.nll
    assert report.num_pairs == 50


def test_cost_is_bounded_and_progress_is_reported(trained: tuple) -> None:
    estimator, theta, x = trained
    seen: list[tuple[str, int, int]] = []
    config = DiagnosticsConfig(num_pairs=100, num_draws=64, max_draws_per_pass=640)
    report = diagnose(estimator, theta, x, config, progress=lambda *a: seen.append(a))
    assert report.num_pairs == 100 and report.num_draws == 64
    sampling = [done for stage, done, _ in seen if stage == "sampling"]
    assert sampling == list(range(10, 101, 10))
    assert seen[-1] == ("scores", 1, 1)


def test_cancellation_stops_the_diagnostics(trained: tuple) -> None:
    from sbiserve.models import TrainingCancelled

    estimator, theta, x = trained
    with pytest.raises(TrainingCancelled):
        diagnose(estimator, theta, x, should_stop=lambda: True)


def test_a_narrow_centre_with_wide_tails_is_called_mis_shaped() -> None:
    generator = torch.Generator().manual_seed(0)
    theta = torch.randn(400, 1, generator=generator)  # x says nothing: the posterior is N(0, 1)
    z = torch.randn(256, 400, 1, generator=generator)
    wide = torch.rand(256, 400, 1, generator=generator) < 0.3
    report = calibration(torch.where(wide, 3 * z, 0.5 * z), theta)
    assert report.findings[0].startswith(
        "mis-shaped in theta_1: too narrow at the centre, too wide in the tails"
    ), report.verdict

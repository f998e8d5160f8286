"""The training loop: validation, early stopping, cancellation, progress, seeds, errors."""

from __future__ import annotations

import math

import pytest
import torch

from sbiserve.models import (
    BoxPrior,
    ConfigError,
    EnergyFlow,
    EnergyFlowConfig,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
    TrainConfig,
    TrainingCancelled,
    fit,
    split_options,
)
from sbiserve.models.training import _mean_loss, _split

SMALL = EnergyFlowConfig(hidden_features=(16, 16))


def data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(n, 2, generator=g)
    return theta, theta + 0.1 * torch.randn(n, 2, generator=g)


def test_progress_and_early_stopping_restore_the_best_weights() -> None:
    theta, x = data()
    seen = []
    config = TrainConfig(
        max_epochs=200,
        patience=3,
        min_steps=0,
        learning_rate=3e-2,
        batch_size=32,
        seed=3,
        ema_decay=0.0,
    )
    torch.manual_seed(0)
    estimator = EnergyFlow(2, 2, SMALL)
    result = fit(estimator, theta, x, config, progress=seen.append)
    assert [info.epoch for info in seen] == list(range(1, result.epochs + 1))
    assert result.stopped_early and result.epochs < 200
    assert result.best_epoch == 1 + min(range(result.epochs), key=result.val_losses.__getitem__)
    assert result.epochs - result.best_epoch == 3
    _, val_idx = _split(len(theta), config.validation_fraction, torch.Generator().manual_seed(3))
    again, _ = _mean_loss(estimator, theta[val_idx], x[val_idx], 4096, config.seed + 1)
    assert again == pytest.approx(result.val_losses[result.kept_epoch - 1], rel=1e-5)
    assert result.val_losses[result.kept_epoch - 1] <= result.best_val_loss + 0.5


def test_no_early_stop_and_no_learning_rate_cut_before_min_steps() -> None:
    theta, x = data()  # 180 training pairs: 6 steps per epoch at batch size 32
    config = TrainConfig(
        max_epochs=500, patience=1, min_steps=240, learning_rate=3e-2, batch_size=32
    )
    rates = []
    torch.manual_seed(0)
    result = fit(EnergyFlow(2, 2, SMALL), theta, x, config, lambda i: rates.append(i.learning_rate))
    assert result.stopped_early and result.epochs >= 40  # 240 steps
    assert rates[:40] == [config.learning_rate] * 40
    assert result.epochs - result.best_epoch >= 1


def test_max_steps_ends_mid_epoch_and_the_cosine_reaches_zero_there() -> None:
    theta, x = data()  # 180 training pairs: 6 steps per epoch at batch size 32
    config = TrainConfig(
        max_epochs=50,
        max_steps=40,
        lr_schedule="cosine",
        patience=1,
        min_steps=0,
        learning_rate=1e-2,
        batch_size=32,
    )
    seen = []
    torch.manual_seed(0)
    result = fit(EnergyFlow(2, 2, SMALL), theta, x, config, seen.append)
    # 40 steps: 6 full epochs and 4 steps of a 7th, which is validated and reported.
    assert result.epochs == 7 and len(result.val_losses) == 7 and not result.stopped_early
    assert [info.max_epochs for info in seen] == [7] * 7  # the planned length
    rates = [info.learning_rate for info in seen]
    # A half cosine over the 40 steps, read after each epoch's last step; patience=1
    # does not end a cosine run early.
    expected = [1e-2 * (1 + math.cos(math.pi * min(6 * e, 40) / 40)) / 2 for e in range(1, 8)]
    assert rates == pytest.approx(expected, abs=1e-9)
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_max_epochs_bounds_max_steps_and_bad_values_are_refused() -> None:
    theta, x = data()
    config = TrainConfig(max_epochs=2, max_steps=1000, min_steps=0, batch_size=32)
    torch.manual_seed(0)
    assert fit(EnergyFlow(2, 2, SMALL), theta, x, config).epochs == 2
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="max_steps"):
            TrainConfig(max_steps=bad)  # type: ignore[arg-type]


class ScriptedFlow(EnergyFlow):
    """An energy flow whose validation losses follow a script, one value per epoch."""

    script: tuple[float, ...] = ()
    calls = 0

    def validation_loss(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        value = self.script[min(type(self).calls, len(self.script) - 1)]
        type(self).calls += 1
        # Per-pair losses with a standard error of 0.1 around the scripted mean.
        spread = torch.tensor([-1.0, 1.0]).repeat(theta.shape[0] // 2)
        return value + spread * 0.1 * math.sqrt(theta.shape[0])


def scripted(monkeypatch: pytest.MonkeyPatch, script: tuple[float, ...]) -> ScriptedFlow:
    """A :class:`ScriptedFlow` whose validation losses follow ``script`` from epoch 1."""
    monkeypatch.setattr(ScriptedFlow, "script", script)
    monkeypatch.setattr(ScriptedFlow, "calls", 0)
    return ScriptedFlow(2, 2, SMALL)


# Best at epoch 2; epochs 3 and 6 come back within a standard error of it (0.1).
KEPT_AT_3_THEN_6 = (1.0, 0.5, 0.55, 0.8, 0.9, 0.52, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9)


@pytest.mark.parametrize("later", [True, False])
def test_the_latest_epoch_within_one_standard_error_is_kept(
    later: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    theta, x = data()  # 20 validation pairs
    flow = scripted(monkeypatch, (1.0, 0.5, 0.55, 0.58, 0.7, 0.59, 0.9, 0.9, 0.9))
    monkeypatch.setattr(ScriptedFlow, "prefer_later_epochs", later)
    config = TrainConfig(max_epochs=9, patience=100, min_steps=0, batch_size=32)
    result = fit(flow, theta, x, config)
    assert result.best_epoch == 2 and result.best_val_loss == pytest.approx(0.5)
    # Epochs 3, 4 and 6 lie within 0.1 of the best; 6 is the latest of them.
    assert result.kept_epoch == (6 if later else 2)


@pytest.mark.parametrize("patience", [None, 2, 4])
def test_a_planned_run_ends_once_no_epoch_is_kept_for_planned_patience_epochs(
    patience: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    theta, x = data()  # 20 validation pairs: a standard error of 0.1 here
    config = TrainConfig(
        max_epochs=12, min_steps=0, batch_size=32, lr_schedule="cosine", planned_patience=patience
    )
    result = fit(scripted(monkeypatch, KEPT_AT_3_THEN_6), theta, x, config)
    # Epochs 3 and 6 lie within a standard error of the best (2): the whole plan keeps 6.
    # Patience 4 sees epoch 6 and ends at 10; patience 2 ends at 5, two epochs after the
    # kept 3, before epoch 6 came back within the band (a patience shorter than such a
    # gap changes the epoch kept).
    assert result.kept_epoch == (3 if patience == 2 else 6)
    assert result.epochs == {None: 12, 2: 5, 4: 10}[patience]
    assert result.stopped_early == (patience is not None)
    with pytest.raises(ConfigError, match="planned_patience"):
        TrainConfig(planned_patience=0)


@pytest.mark.parametrize("patience", [2, 4])
def test_planned_patience_waits_for_half_the_plan_when_min_steps_is_longer(
    patience: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    theta, x = data()  # 6 steps per epoch: the 12-epoch plan's half is epoch 6's end
    config = TrainConfig(
        max_epochs=12,
        min_steps=10**6,  # longer than the plan: alone it would never let the run end
        batch_size=32,
        lr_schedule="cosine",
        planned_patience=patience,
    )
    result = fit(scripted(monkeypatch, KEPT_AT_3_THEN_6), theta, x, config)
    # Patience 2 may not end the run at epoch 5 (before half the plan): epoch 6 comes
    # back within the band and is kept; both end 2 and 4 epochs after it.
    assert result.kept_epoch == 6
    assert result.epochs == {2: 8, 4: 10}[patience]
    assert result.stopped_early


def test_energy_flows_prefer_later_epochs_and_density_families_do_not() -> None:
    from sbiserve.models import get_family

    assert EnergyFlow.prefer_later_epochs
    assert get_family("semi_autoregressive_energy_flow").prefer_later_epochs
    assert not get_family("self_normalizing_flow").prefer_later_epochs
    assert not get_family("npe").prefer_later_epochs


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_restore_best_false_keeps_the_last_epoch(ema_decay: float) -> None:
    theta, x = data()
    config = TrainConfig(max_epochs=6, min_steps=0, seed=3, ema_decay=ema_decay, restore_best=False)
    torch.manual_seed(0)
    estimator = EnergyFlow(2, 2, SMALL)
    result = fit(estimator, theta, x, config)
    _, val_idx = _split(len(theta), config.validation_fraction, torch.Generator().manual_seed(3))
    again, _ = _mean_loss(estimator, theta[val_idx], x[val_idx], 4096, config.seed + 1)
    assert again == pytest.approx(result.val_losses[-1], rel=1e-5)
    assert result.kept_epoch == result.epochs


def test_cancellation_between_steps() -> None:
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(TrainingCancelled, match="cancelled"):
        fit(EnergyFlow(2, 2, SMALL), *data(), TrainConfig(max_epochs=50, batch_size=16), None, stop)
    assert len(calls) == 6


def test_same_seed_same_weights_and_ema() -> None:
    config = TrainConfig(max_epochs=3, seed=5, ema_decay=0.9)
    weights = []
    for _ in range(2):
        torch.manual_seed(1)
        estimator = EnergyFlow(2, 2, SMALL)
        fit(estimator, *data(), config)
        weights.append(torch.cat([p.flatten() for p in estimator.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_bad_data_gets_named_errors() -> None:
    theta, x = data()
    theta[17, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"theta .* index \[17, 1\]"):
        fit(EnergyFlow(2, 2, SMALL), theta, x)
    theta, x = data()
    x[3, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="x contains 1"):
        fit(EnergyFlow(2, 2, SMALL), theta, x)
    theta, x = data()
    with pytest.raises(ShapeError, match="same number of rows"):
        fit(EnergyFlow(2, 2, SMALL), theta[:10], x[:11])
    with pytest.raises(ShapeError, match="3 feature"):
        fit(EnergyFlow(3, 2, SMALL), theta, x)
    prior = BoxPrior(low=(0.0, 0.0), high=(0.5, 1.0))
    with pytest.raises(OutOfSupportError, match="outside the prior"):
        fit(EnergyFlow(2, 2, SMALL, prior), theta, x, TrainConfig(max_epochs=1))


def test_options_are_split_and_checked() -> None:
    model, train = split_options("energy_flow", {"beta": 0.5, "max_epochs": 7})
    assert model.beta == 0.5 and train.max_epochs == 7
    with pytest.raises(ConfigError, match=r"\['hiden'\]"):
        split_options("energy_flow", {"hiden": 3})
    with pytest.raises(ConfigError, match="beta"):
        split_options("energy_flow", {"beta": 2.5})
    with pytest.raises(ConfigError, match="integer"):
        split_options("energy_flow", {"num_draws": "four"})
    with pytest.raises(ConfigError, match="unknown family"):
        split_options("no_such_family", {})


def test_budget_defaults_apply_under_named_options_when_the_budget_is_given() -> None:
    from sbiserve.models.energy_flow import planned_steps

    small, small_train = split_options("energy_flow", {}, 9_999)
    assert small.num_draws == 8 and small.hidden_features == (128, 128, 128)
    assert small.diffusion_steps == 1  # without the number of parameters: one step
    assert split_options("energy_flow", {}, 1_000)[0].hidden_features == (64, 64, 64)
    assert small_train.lr_schedule == "cosine" and small_train.learning_rate == 3e-3
    assert small_train.max_steps == planned_steps(9_999)
    large, large_train = split_options("energy_flow", {}, 10_000)
    assert large == EnergyFlowConfig() and large.num_draws == 8
    assert large_train.lr_schedule == "cosine" and large_train.max_steps == 4000
    saef, saef_train = split_options("semi_autoregressive_energy_flow", {}, 10_000, 2)
    # The SAEF takes the energy flow's budget defaults, except the two-parameter network.
    assert saef.num_draws == 8 and saef.hidden_features == (128, 128, 128)
    assert saef_train == large_train
    # A named option wins; no budget keeps the class defaults and TrainConfig's.
    named, named_train = split_options("energy_flow", {"num_draws": 16, "max_steps": 9}, 500)
    assert named.num_draws == 16 and named_train.max_steps == 9
    assert split_options("energy_flow", {}, None) == (EnergyFlowConfig(), TrainConfig())
    # The network and the share of the planned steps follow the budget (below
    # SMALL_BUDGET or not) and the number of parameters (at most two or more); without
    # the number of parameters a small budget gets 3 x 64 and every budget all its steps.
    for budget, theta_dim, hidden, steps in (
        (1_000, 1, (48,) * 3, 1500),
        (1_000, 2, (48,) * 3, 1500),
        (1_000, 5, (64,) * 3, 600),
        (1_000, None, (64,) * 3, 2000),
        (2_999, None, (64,) * 3, planned_steps(2_999)),
        (5_000, 2, (96,) * 3, planned_steps(5_000)),
        (5_000, 3, (48,) * 3, 2 * planned_steps(5_000)),
        (5_000, None, (128,) * 3, planned_steps(5_000)),
        (10_000, 10, (48,) * 3, 8000),
        (10_000, 2, (96,) * 3, 4000),
    ):
        model, train = split_options("energy_flow", {}, budget, theta_dim)
        assert (model.hidden_features, train.max_steps) == (hidden, steps), (budget, theta_dim)
        # more than two parameters: diffusion levels (two below 3,000 simulations, three
        # from there) and 4 draws per pair
        levels = 1 if theta_dim is None or theta_dim <= 2 else (2 if budget < 3_000 else 3)
        assert (model.diffusion_steps, model.num_draws) == (levels, 8 if levels == 1 else 4)
        # one or two parameters, at every budget: four mixture heads
        few = theta_dim is not None and theta_dim <= 2
        assert model.mixture_heads == (4 if few else 1), (budget, theta_dim)
        # ... and truncation to the prior box (ignored where there is none)
        assert model.truncation_tries == (4 if few else 0), (budget, theta_dim)
        # the sized defaults train without spread weights (section 2.22); the unsized keep them
        assert (model.spread_weighting, model.spread_draws) == (theta_dim is None, 4), (
            budget,
            theta_dim,
        )
        # a planned run ends after 30 epochs without a kept one (the SAEF: not measured)
        assert train.planned_patience == (None if theta_dim is None else 30)
    assert split_options("energy_flow", {"max_steps": 7}, 1_000, 10)[1].max_steps == 7
    assert split_options("energy_flow", {}, 3_000)[0].hidden_features == (128,) * 3
    named_width, _ = split_options("energy_flow", {"hidden_features": [64]}, 1_000, 2)
    assert named_width.hidden_features == (64,)
    # Unknown options are still refused by name, the budget's defaults aside.
    with pytest.raises(ConfigError, match=r"\['hiden'\]"):
        split_options("energy_flow", {"hiden": 3}, 100)
    saef, saef_train = split_options("semi_autoregressive_energy_flow", {}, 100)
    assert saef.hidden_features == (64, 64, 64) and saef_train.max_steps == 2000
    # The SAEF's own sizes: 30% of the steps below 3,000 simulations with more than two
    # parameters, all of them otherwise, 3 x 64 below 3,000 and 3 x 128 from there.
    for budget, theta_dim, hidden, steps in (
        (1_000, 5, (64,) * 3, 600),
        (1_000, 2, (64,) * 3, 2000),
        (10_000, 10, (128,) * 3, 4000),
        (10_000, 2, (128,) * 3, 4000),
    ):
        model, train = split_options("semi_autoregressive_energy_flow", {}, budget, theta_dim)
        assert (model.hidden_features, train.max_steps) == (hidden, steps), (budget, theta_dim)
        assert model.mixture_heads == 1  # the heads were measured without blocks only
        assert model.truncation_tries == 0  # one block only
    # Families without budget defaults ignore the budget.
    assert split_options("ebflow", {}, 100)[1] == TrainConfig()


def test_planned_steps_double_with_every_tenfold_budget() -> None:
    from sbiserve.models.energy_flow import planned_steps

    assert [planned_steps(n) for n in (10, 1_000, 10_000, 100_000)] == [2000, 2000, 4000, 8000]
    assert planned_steps(1_000) < planned_steps(5_000) < planned_steps(10_000)


def test_null_options_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="max_epochs cannot be null"):
        split_options("energy_flow", {"max_epochs": None})
    with pytest.raises(ConfigError, match="beta cannot be null"):
        split_options("energy_flow", {"beta": None})


def test_min_steps_defaults_to_the_familys_and_is_checked() -> None:
    from sbiserve.models import get_family

    assert TrainConfig().min_steps is None
    assert EnergyFlow.default_min_steps == 2000
    assert get_family("npe").default_min_steps == 0
    theta, x = data()  # 180 training pairs: 6 steps per epoch at batch size 32
    torch.manual_seed(0)
    config = TrainConfig(max_epochs=400, patience=1, batch_size=32, learning_rate=3e-2)
    result = fit(EnergyFlow(2, 2, SMALL), theta, x, config)
    assert result.epochs >= 2000 // 6  # no stop before the energy flow's 2,000 steps
    for bad in ("5", True, -1):
        with pytest.raises(ConfigError, match="min_steps"):
            TrainConfig(min_steps=bad)


def test_a_likelihood_family_stops_early_at_once_but_cuts_its_rate_only_later() -> None:
    from sbiserve.models import build_estimator

    theta, x = data()  # 180 training pairs: 6 steps per epoch at batch size 32
    flow = build_estimator(
        "self_normalizing_flow", 2, 2, {"hidden_features": [8], "transforms": 1}, seed=0
    )
    assert (flow.default_min_steps, flow.default_plateau_steps) == (0, 1000)
    config = TrainConfig(max_epochs=400, patience=3, batch_size=32, learning_rate=3e-2)
    rates: list[float] = []
    result = fit(flow, theta, x, config, lambda info: rates.append(info.learning_rate))
    assert result.stopped_early and result.epochs * 6 < 1000
    assert result.epochs - result.best_epoch == 3  # ended by patience alone
    assert rates == [config.learning_rate] * result.epochs  # no cut before 1,000 steps


def test_the_finiteness_check_tells_an_overflowing_sum_from_a_bad_value() -> None:
    from sbiserve.models.validation import check_finite

    large = torch.full((4, 2), 3e38)  # finite, but its float32 sum overflows to inf
    check_finite(large, "x")
    for bad in (math.nan, math.inf, -math.inf):
        values = large.clone()
        values[2, 1] = bad
        with pytest.raises(NonFiniteError, match=r"x contains 1 .* index \[2, 1\]"):
            check_finite(values, "x")
    check_finite(torch.tensor([1, 2], dtype=torch.int64), "counts")  # integers are finite

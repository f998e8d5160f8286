"""A job's options: checked once by the route, stored in one form, rebuilt by the worker."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sbiserve.models import EnergyFlowConfig, TrainConfig, split_options
from sbiserve.service.errors import InvalidInput
from sbiserve.service.hyperparameters import from_stored, normalize

ASKED = {"hidden_features": [8, 8], "max_epochs": 3, "learning_rate": 0.01}


def test_the_stored_form_holds_every_option_with_its_value_but_no_device() -> None:
    stored = normalize("energy_flow", ASKED).to_dict()
    assert set(stored) == {"model", "training"}
    assert stored["model"] == {**EnergyFlowConfig().to_dict(), "hidden_features": [8, 8]}
    defaults = {k: v for k, v in TrainConfig().to_dict().items() if k != "device"}
    assert stored["training"] == {**defaults, "max_epochs": 3, "learning_rate": 0.01}


def test_the_stored_form_holds_the_defaults_for_the_datasets_size() -> None:
    small = normalize("energy_flow", {}, 1_000).to_dict()
    assert small["model"]["hidden_features"] == [64, 64, 64]
    assert small["model"]["num_draws"] == 8
    assert small["training"]["lr_schedule"] == "cosine"
    assert small["training"]["max_steps"] == 2_000
    # Below 3,000 simulations: 600 steps for more than two parameters, 3 x 48 and 1,500
    # steps for one or two.
    assert normalize("energy_flow", {}, 1_000, 5).to_dict()["training"]["max_steps"] == 600
    two = normalize("energy_flow", {}, 1_000, 2).to_dict()
    assert (two["model"]["hidden_features"], two["training"]["max_steps"]) == ([48] * 3, 1_500)
    large = normalize("energy_flow", {}, 10_000).to_dict()
    assert large["model"] == EnergyFlowConfig().to_dict()
    assert large["training"]["max_steps"] == 4_000
    assert normalize("energy_flow", {}, 10_000, 2).to_dict()["model"]["hidden_features"] == [96] * 3
    asked = normalize("energy_flow", ASKED, 1_000).to_dict()
    assert asked["model"]["hidden_features"] == [8, 8] and asked["model"]["num_draws"] == 8
    assert asked["training"]["learning_rate"] == 0.01  # named, so not the budget's 3e-3


def test_the_worker_trains_with_what_the_route_accepted_on_its_own_device() -> None:
    accepted = normalize("energy_flow", ASKED)
    options = from_stored("energy_flow", accepted.to_dict(), torch.device("cpu"))
    assert options.model == accepted.model
    assert options.training == TrainConfig(**{**accepted.training.to_dict(), "device": "cpu"})
    assert options.to_dict() == accepted.to_dict()  # what the model's metadata gets
    estimator = options.build(2, 3, None)
    assert estimator.config == accepted.model and type(estimator).__name__ == "EnergyFlow"


def test_a_jobs_model_starts_from_weights_its_training_seed_fixes() -> None:
    # The worker's generator is in whatever state earlier jobs left; the same options must
    # still give the same run (an unseeded start once drew the demo's crescents as blobs).
    def start(options: dict[str, Any], scramble: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(scramble)
        job = from_stored("energy_flow", normalize("energy_flow", options).to_dict(), "cpu")
        return job.build(2, 3, None).state_dict()

    first, again = start(ASKED, 0), start(ASKED, 1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    reseeded = start({**ASKED, "seed": 1}, 0)
    assert not all(torch.equal(first[k], reseeded[k]) for k in first)


def test_a_job_queued_before_the_stored_form_still_trains_as_it_asked() -> None:
    # Such jobs stored the user's flat options; the worker used to overwrite the device.
    legacy = {**ASKED, "device": "cuda:3"}
    options = from_stored("energy_flow", legacy, "cpu")
    model, training = split_options("energy_flow", {**ASKED, "device": "cpu"})
    assert (options.model, options.training) == (model, training)
    assert from_stored("energy_flow", {}, "cpu").to_dict() == normalize("energy_flow", {}).to_dict()


OPTIONS = "hyperparameters"  # the field that names a bad option
BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("device", "energy_flow", {"device": "cuda"}, "device is not a job option", OPTIONS),
    ("unknown family", "nope", {}, "unknown family", "family"),
    ("unknown family, options too", "nope", {"max_epochs": 2}, "unknown family", "family"),
    ("unknown option", "energy_flow", {"hiden": 1}, "hiden", OPTIONS),
    ("null", "energy_flow", {"max_epochs": None}, "max_epochs", OPTIONS),
    ("out of range", "energy_flow", {"batch_size": 0}, "batch_size", OPTIONS),
    ("wrong type", "energy_flow", {"hidden_features": "wide"}, "hidden_features", OPTIONS),
]


@pytest.mark.parametrize(
    ("family", "options", "words", "field"), [row[1:] for row in BAD], ids=[r[0] for r in BAD]
)
def test_bad_options_are_refused_naming_the_field(
    family: str, options: dict[str, Any], words: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        normalize(family, options)
    assert words in raised.value.message and raised.value.field == field

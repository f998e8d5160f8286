"""The worker diagnoses every model it trains; the report is part of the model's metadata,
parameter names from the upload flow into it, and progress reaches the job's events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sbiserve.service.stack import LocalStack

from .conftest import API_KEY, PRIOR, TINY, toy_data, wait_job


@pytest.fixture(scope="module")
def named_job(stack: LocalStack) -> dict[str, Any]:
    """A tiny energy flow on toy data uploaded with parameter and feature names."""
    theta, x = toy_data(seed=11)
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=60) as api:
        dataset = api.post(
            "/v1/datasets",
            json={
                "theta": theta.tolist(),
                "x": x.tolist(),
                "theta_names": ["mass", "spin"],
                "x_names": ["m_obs", "s_obs", "product"],
            },
        ).json()
        body = {"dataset_id": dataset["dataset_id"], "hyperparameters": TINY, "prior": PRIOR}
        job = wait_job(api, api.post("/v1/jobs", json=body).json()["job_id"])
        assert job["status"] == "succeeded", job
        return {"dataset": dataset, "job": job}


def test_names_are_stored_with_the_dataset(named_job: dict[str, Any]) -> None:
    assert named_job["dataset"]["theta_names"] == ["mass", "spin"]
    assert named_job["dataset"]["x_names"] == ["m_obs", "s_obs", "product"]


def test_the_model_carries_its_diagnostics(api: httpx.Client, named_job: dict[str, Any]) -> None:
    model = api.get(f"/v1/models/{named_job['job']['model_id']}").json()
    assert model["theta_names"] == ["mass", "spin"]
    assert model["x_names"] == ["m_obs", "s_obs", "product"]
    report = model["diagnostics"]
    assert report["num_pairs"] == 40  # the validation split of 400 simulations
    assert report["num_draws"] == 256
    assert len(report["sbc_p_values"]) == 2 and len(report["rank_counts"]) == 2
    assert sum(report["rank_counts"][0]) == 40
    assert report["tarp_alpha"][0] == 0 and report["tarp_alpha"][-1] == 1
    assert report["energy_score"] > 0 and report["nll"] is None
    assert isinstance(report["verdict"], str) and report["verdict"]
    assert report["parameter_names"] == ["mass", "spin"]
    assert all("mass" in f or "spin" in f or "overall" in f for f in report["findings"])


def test_diagnostics_progress_is_in_the_job_events(
    api: httpx.Client, named_job: dict[str, Any]
) -> None:
    text = api.get(f"/v1/jobs/{named_job['job']['job_id']}/events").text
    assert "event: diagnostics" in text
    assert text.index("event: progress") < text.index("event: diagnostics")
    assert text.index("event: diagnostics") < text.index("event: status")
    assert '"stage": "sampling"' in text and '"stage": "scores"' in text


def test_names_must_match_the_columns(api: httpx.Client) -> None:
    theta, x = toy_data(n=20, seed=12)
    answer = api.post(
        "/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist(), "theta_names": ["a"]}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "theta_names"
    assert "1 name(s) but there are 2 columns" in answer.json()["error"]["message"]
    repeated = api.post(
        "/v1/datasets",
        json={"theta": theta.tolist(), "x": x.tolist(), "theta_names": ["a", "a"]},
    )
    assert repeated.status_code == 422 and "repeats" in repeated.json()["error"]["message"]


def test_multipart_uploads_take_names_too(api: httpx.Client) -> None:
    import io

    import numpy as np

    theta, x = toy_data(n=30, seed=13)
    files = {}
    for key, array in (("theta", theta), ("x", x)):
        buffer = io.BytesIO()
        np.save(buffer, array.astype(np.float32))
        files[key] = (f"{key}.npy", buffer.getvalue(), "application/x-npy")
    data = {"theta_names": '["p", "q"]', "x_names": "u, v, w"}
    answer = api.post("/v1/datasets", files=files, data=data)
    assert answer.status_code in (200, 201), answer.text
    assert answer.json()["theta_names"] == ["p", "q"]
    assert answer.json()["x_names"] == ["u", "v", "w"]

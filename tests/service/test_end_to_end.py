"""Upload -> train -> progress events -> model listed -> samples, JSON and .npy."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest

from .conftest import PRIOR, TINY, toy_data, wait_job


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_upload_train_events_sample(api: httpx.Client) -> None:
    theta, x = toy_data()
    response = api.post(
        "/v1/datasets",
        files={"theta": ("theta.npy", npy(theta)), "x": ("x.npy", npy(x))},
        data={"name": "toy"},
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["num_simulations"] == 400 and dataset["theta_dim"] == 2
    assert dataset["x_dim"] == 3 and len(dataset["sha256"]) == 64
    assert response.headers["location"] == f"/v1/datasets/{dataset['dataset_id']}"
    # The same content as .npz is the same dataset (content-addressed).
    buffer = io.BytesIO()
    np.savez(buffer, theta=theta, x=x)
    again = api.post("/v1/datasets", files={"file": ("d.npz", buffer.getvalue())})
    assert again.status_code == 200 and again.json()["dataset_id"] == dataset["dataset_id"]
    assert dataset["dataset_id"] in [d["dataset_id"] for d in api.get("/v1/datasets").json()]

    body = {
        "dataset_id": dataset["dataset_id"],
        "family": "semi_autoregressive_energy_flow",
        "hyperparameters": {**TINY, "max_epochs": 3, "blocks": 2},
        "prior": PRIOR,
        "name": "toy",
    }
    accepted = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "e2e-1"})
    assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
    job_id = accepted.json()["job_id"]
    assert accepted.headers["location"] == f"/v1/jobs/{job_id}"
    repeat = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "e2e-1"})
    assert repeat.json()["job_id"] == job_id

    events = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    progress = [data for kind, data in events if kind == "progress"]
    assert [p["epoch"] for p in progress] == [1, 2, 3]
    assert all(np.isfinite(p["train_loss"]) and np.isfinite(p["val_loss"]) for p in progress)
    assert events[-1][0] == "status" and events[-1][1]["status"] == "succeeded"
    model_id = events[-1][1]["model_id"]

    job = wait_job(api, job_id)
    assert job["model_id"] == model_id and job["progress"]["epoch"] == 3
    model = api.get(f"/v1/models/{model_id}").json()
    assert model["family"] == "semi_autoregressive_energy_flow"
    assert model["dataset_id"] == dataset["dataset_id"] and model["job_id"] == job_id
    assert len(model["training"]["val_losses"]) == 3 and model["log_prob_kind"] == "none"
    assert model["hyperparameters"]["model"]["blocks"] == 2
    # One normalized form, on the job and the model alike; the device is the worker's.
    assert job["hyperparameters"] == model["hyperparameters"]
    assert job["hyperparameters"]["training"]["max_epochs"] == 3
    assert "device" not in job["hyperparameters"]["training"]
    assert model["training"]["device"] == "cpu"
    assert model_id in [m["model_id"] for m in api.get("/v1/models").json()]

    # One observation -> (n, theta_dim); a batch -> (n, batch, theta_dim); inside the prior.
    one = api.post(
        "/v1/posterior/sample",
        json={"model": model_id, "x": [0.1, 0.2, 0.0], "num_samples": 100, "seed": 3},
    ).json()
    samples = np.array(one["samples"])
    assert samples.shape == (100, 2) and one["seed"] == 3
    assert (np.abs(samples) <= 1).all()
    same = api.post(
        "/v1/posterior/sample",
        json={"model": model_id, "x": [0.1, 0.2, 0.0], "num_samples": 100, "seed": 3},
    ).json()
    assert np.allclose(same["samples"], samples, atol=1e-6)
    batch = api.post(
        "/v1/posterior/sample",
        json={"model": model_id, "x": [[0.1, 0.2, 0.0], [0.5, -0.5, -0.2]], "num_samples": 7},
        headers={"Accept": "application/x-npy"},
    )
    assert batch.headers["content-type"] == "application/x-npy"
    draws = np.load(io.BytesIO(batch.content), allow_pickle=False)
    assert draws.shape == (7, 2, 2) and draws.dtype == np.float32
    assert batch.headers["x-sbiserve-model-id"] == model_id

    # Aliases resolve everywhere a model reference is taken.
    aliased = api.put(f"/v1/models/{model_id}/aliases/toy:latest")
    assert aliased.status_code == 200 and "toy:latest" in aliased.json()["aliases"]
    by_alias = api.post(
        "/v1/posterior/sample", json={"model": "toy:latest", "x": [0.0, 0.0, 0.0], "num_samples": 2}
    )
    assert by_alias.json()["model_id"] == model_id
    density = api.post(
        "/v1/posterior/log_prob", json={"model": model_id, "theta": [[0, 0]], "x": [0.0, 0.0, 0.0]}
    )
    assert density.status_code == 422 and density.json()["error"]["code"] == "no_density"

    # Deleting the model removes it and its alias.
    assert api.delete("/v1/models/toy:latest").status_code == 204
    assert api.get(f"/v1/models/{model_id}").status_code == 404
    assert api.get("/v1/models/toy:latest").status_code == 404


def test_health_and_openapi(api: httpx.Client) -> None:
    assert api.get("/livez").json() == {"status": "ok"}
    ready = api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["workers"] >= 1
    schema = api.get("/openapi.json").json()
    for path in (
        "/v1/datasets",
        "/v1/jobs",
        "/v1/jobs/{job_id}/events",
        "/v1/posterior/sample",
        "/v1/posterior/log_prob",
        "/v1/models/{model_ref}",
    ):
        assert path in schema["paths"], path
    assert "SampleRequest" in schema["components"]["schemas"]


def test_log_prob_of_a_family_with_a_density(api: httpx.Client) -> None:
    theta, x = toy_data(300, seed=21)
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    body = {
        "dataset_id": dataset["dataset_id"],
        "family": "self_normalizing_flow",
        "hyperparameters": {"hidden_features": [16], "transforms": 2, "max_epochs": 2},
        "prior": PRIOR,
    }
    job = wait_job(api, api.post("/v1/jobs", json=body).json()["job_id"])
    assert job["status"] == "succeeded", job
    model_id = job["model_id"]

    def log_prob(theta: list, x: list) -> httpx.Response:
        return api.post("/v1/posterior/log_prob", json={"model": model_id, "theta": theta, "x": x})

    rows = log_prob([[0.1, 0.2], [0.5, -0.5], [1.5, 0.0]], [0.1, 0.2, 0.0])
    assert rows.status_code == 200, rows.text
    values = rows.json()["log_prob"]
    assert rows.json()["kind"] == "exact" and len(values) == 3
    assert all(isinstance(v, float) for v in values[:2])
    assert values[2] is None  # outside the prior: -inf, which JSON writes as null
    one = log_prob([0.1, 0.2], [0.1, 0.2, 0.0])  # a single theta, like a single x
    assert one.status_code == 200 and one.json()["log_prob"] == pytest.approx(values[:1])


def test_a_model_with_diffusion_levels_trains_and_samples_over_http(api: httpx.Client) -> None:
    """The default for more than two parameters from 3,000 simulations, small: three
    generator passes per draw through the worker's batched sampling path."""
    theta, x = toy_data(300, seed=22)
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    body = {
        "dataset_id": dataset["dataset_id"],
        "hyperparameters": {**TINY, "diffusion_steps": 3},
        "prior": PRIOR,
    }
    job = wait_job(api, api.post("/v1/jobs", json=body).json()["job_id"])
    assert job["status"] == "succeeded", job
    model = api.get(f"/v1/models/{job['model_id']}").json()
    assert model["hyperparameters"]["model"]["diffusion_steps"] == 3

    def sample(seed: int, x_o: list) -> np.ndarray:
        reply = api.post(
            "/v1/posterior/sample",
            json={"model": job["model_id"], "x": x_o, "num_samples": 200, "seed": seed},
        )
        assert reply.status_code == 200, reply.text
        return np.array(reply.json()["samples"])

    draws = sample(5, [0.1, 0.2, 0.0])
    assert draws.shape == (200, 2) and (np.abs(draws) <= 1).all()
    assert np.allclose(sample(5, [0.1, 0.2, 0.0]), draws, atol=1e-6)
    assert not np.allclose(sample(6, [0.1, 0.2, 0.0]), draws)
    assert sample(5, [[0.1, 0.2, 0.0], [0.5, -0.5, -0.2]]).shape == (200, 2, 2)

"""Sampling while training, concurrent requests batched together, cancellation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from .conftest import PRIOR, toy_data, train, wait_job

SMALL_NET = {"hidden_features": [16, 16], "batch_size": 256}


def metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_sampling_is_answered_during_training_and_batched(api: httpx.Client) -> None:
    model_id = train(api, seed=1)["model_id"]
    theta, x = toy_data(4000, seed=2)
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    long_job = api.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["dataset_id"],
            "hyperparameters": {"max_epochs": 10_000, "patience": 10_000, **SMALL_NET},
            "prior": PRIOR,
        },
    ).json()["job_id"]
    try:
        check_sampling_while_training(api, model_id, long_job)
    finally:
        api.delete(f"/v1/jobs/{long_job}")
    # Cancelled, it stops at its next step.
    job = wait_job(api, long_job, timeout_s=60)
    assert job["status"] == "cancelled" and job["model_id"] is None
    # With no active job left, the dataset can go.
    assert api.delete(f"/v1/datasets/{dataset['dataset_id']}").status_code == 204


def check_sampling_while_training(api: httpx.Client, model_id: str, long_job: str) -> None:
    deadline = time.monotonic() + 120
    while api.get(f"/v1/jobs/{long_job}").json()["status"] != "running":
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.2)

    # The single worker is training; sampling still answers.
    started = time.monotonic()
    one = api.post(
        "/v1/posterior/sample", json={"model": model_id, "x": [0.0, 0.0, 0.0], "num_samples": 50}
    )
    assert one.status_code == 200 and np.array(one.json()["samples"]).shape == (50, 2)
    assert time.monotonic() - started < 15
    assert api.get(f"/v1/jobs/{long_job}").json()["status"] == "running"

    # Many concurrent requests for one model share forward passes.
    requests_before = metric(api, "sbiserve_sample_requests_total")
    batches_before = metric(api, "sbiserve_sample_batches_total")

    def ask(i: int) -> int:
        body = {"model": model_id, "x": [0.1 * i, 0.0, 0.0], "num_samples": 20, "seed": i}
        response = api.post("/v1/posterior/sample", json=body)
        assert response.status_code == 200, response.text
        return int(response.json()["batch_requests"])

    with ThreadPoolExecutor(32) as pool:
        sizes = list(pool.map(ask, range(64)))
    assert max(sizes) > 1, sizes
    requests = metric(api, "sbiserve_sample_requests_total") - requests_before
    batches = metric(api, "sbiserve_sample_batches_total") - batches_before
    assert requests == 64 and batches < requests
    assert api.get(f"/v1/jobs/{long_job}").json()["status"] == "running"


def test_dataset_in_use_cannot_be_deleted(api: httpx.Client) -> None:
    theta, x = toy_data(300, seed=9)
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    job = api.post(
        "/v1/jobs",
        json={
            "dataset_id": dataset["dataset_id"],
            "hyperparameters": {"max_epochs": 10_000, "patience": 10_000, **SMALL_NET},
        },
    ).json()["job_id"]
    try:
        refused = api.delete(f"/v1/datasets/{dataset['dataset_id']}")
        assert refused.status_code == 409 and job in refused.json()["error"]["message"]
        assert api.get(f"/v1/datasets/{dataset['dataset_id']}").status_code == 200
    finally:
        api.delete(f"/v1/jobs/{job}")
    assert wait_job(api, job, timeout_s=60)["status"] == "cancelled"

"""Failures: a worker SIGKILLed mid-training, a job that kills every worker, Redis restarts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from sbiserve.service.stack import EmbeddedRedis, LocalStack

from .conftest import PRIOR, fast_settings, toy_data, wait_job

# Long enough (a few seconds on a fast CPU) that a worker is still training when killed.
LONG = {"hidden_features": [16, 16], "batch_size": 128, "max_epochs": 40, "patience": 1000}


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Two workers on a private Redis that the tests may stop and restart."""
    settings = fast_settings(
        tmp_path_factory.mktemp("resilience"), redis_url=None, claim_after_s=3.0, max_attempts=2
    )
    with LocalStack(settings, workers=2, supervise=False) as stack:  # the tests kill on purpose
        yield stack


@pytest.fixture
def client(private: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=private.url, timeout=60) as c:
        yield c


def start_long_job(client: httpx.Client, seed: int) -> str:
    theta, x = toy_data(2000, seed=seed)
    dataset = client.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    body = {"dataset_id": dataset["dataset_id"], "hyperparameters": LONG, "prior": PRIOR}
    return str(client.post("/v1/jobs", json=body).json()["job_id"])


def kill_worker_running(
    client: httpx.Client, stack: LocalStack, job_id: str, spare: str | None = None
) -> str:
    """Waits until a worker (not ``spare``, killed before) runs the job, SIGKILLs it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        name = job["worker"]
        if job["status"] == "running" and name and name != spare:
            time.sleep(0.2)  # let it train a little
            pid = int(name.split("-")[-2])
            assert pid in [w.pid for w in stack.workers], name
            os.kill(pid, signal.SIGKILL)
            return str(name)
        time.sleep(0.1)
    raise AssertionError(f"no worker started job {job_id}")


def test_killed_worker_job_is_finished_by_another(client: httpx.Client, private: LocalStack):
    job_id = start_long_job(client, seed=11)
    killed = kill_worker_running(client, private, job_id)
    job = wait_job(client, job_id, timeout_s=240)
    assert job["status"] == "succeeded", job
    assert job["worker"] != killed and job["attempts"] == 2
    published = [m for m in client.get("/v1/models").json() if m["job_id"] == job_id]
    assert len(published) == 1 and published[0]["model_id"] == job["model_id"]
    assert len(list((private.settings.data_dir / "models").iterdir())) == 1
    # The replacement worker keeps the stack at two.
    private.workers = [w for w in private.workers if w.poll() is None]
    private.start_worker()


def test_job_that_kills_every_worker_goes_to_dead_letter(client: httpx.Client, private):
    job_id = start_long_job(client, seed=12)
    first = kill_worker_running(client, private, job_id)
    # The second attempt also dies; the next start exceeds max_attempts=2.
    kill_worker_running(client, private, job_id, spare=first)
    private.workers = [w for w in private.workers if w.poll() is None]
    private.start_worker()  # no worker is left alive: a fresh one takes the job up
    job = wait_job(client, job_id, timeout_s=240)
    assert job["status"] == "failed" and "gave up after 2 attempt" in job["error"], job
    assert job["model_id"] is None
    metrics = client.get("/metrics").text
    assert "sbiserve_dead_letter_jobs 1.0" in metrics
    private.workers = [w for w in private.workers if w.poll() is None]
    private.start_worker()


def test_redis_restart_gives_503_then_recovers(client: httpx.Client, private: LocalStack):
    private.wait_ready()
    model_id = next(m["model_id"] for m in client.get("/v1/models").json())
    assert private.redis is not None
    port = private.redis.port
    private.redis.stop()

    ready = client.get("/readyz")
    assert ready.status_code == 503 and "Redis" in ready.json()["error"]["message"]
    down = client.get("/v1/jobs/anything")
    assert down.status_code == 503
    assert "unreachable" in down.json()["error"]["message"]
    sample = {"model": model_id, "x": [0.0, 0.0, 0.0], "num_samples": 10, "seed": 1}
    assert client.post("/v1/posterior/sample", json=sample).status_code == 503
    assert client.get("/v1/models").status_code == 200  # the registry is on disk

    private.redis = EmbeddedRedis(port=port)
    private.redis.start()
    private.wait_ready(timeout_s=60)
    answer = client.post("/v1/posterior/sample", json=sample)
    assert answer.status_code == 200, answer.text
    assert np.array(answer.json()["samples"]).shape == (10, 2)

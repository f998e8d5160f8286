"""A live service for the tests: a real Redis (the suite's, see ``tests/conftest.py``; own
key prefix), a real worker process, the API over real HTTP on a free port."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from sbiserve.service.settings import Settings
from sbiserve.service.stack import LocalStack

API_KEY = "test-key-1234"


def fast_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings with short timers so failures are detected in seconds."""
    values: dict[str, Any] = {
        "redis_url": os.environ["SBISERVE_TEST_REDIS_URL"],  # set by tests/conftest.py
        "key_prefix": f"sbiserve-test-{uuid.uuid4().hex[:8]}",
        "data_dir": data_dir,
        "port": 0,
        "heartbeat_s": 0.5,
        "claim_after_s": 4.0,
        "worker_ttl_s": 5.0,
        "sample_wait_ms": 20,
        "sample_timeout_s": 20.0,
    }
    values.update(overrides)
    return Settings(**values)


def cleanup(settings: Settings) -> None:
    """Deletes every Redis key of a test prefix."""
    if not settings.redis_url:
        return
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.key_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = fast_settings(
        tmp_path_factory.mktemp("service"),
        api_key=API_KEY,
        max_request_bytes=2**20,
        max_upload_bytes=4 * 2**20,
        max_num_samples=50_000,
    )
    try:
        with LocalStack(settings) as running:
            yield running
    finally:
        cleanup(settings)


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


def toy_data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """theta ~ U(-1, 1)^2, x = theta + noise (3 features)."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-1, 1, size=(n, 2))
    x = np.concatenate([theta, theta[:, :1] * theta[:, 1:]], axis=1) + 0.05 * rng.normal(
        size=(n, 3)
    )
    return theta, x


TINY = {"hidden_features": [16, 16], "max_epochs": 2, "batch_size": 128}
PRIOR = {"type": "box", "low": [-1, -1], "high": [1, 1]}


def wait_job(api: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    """Polls a job until it is terminal."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def train(api: httpx.Client, seed: int = 0, **hyperparameters: Any) -> dict[str, Any]:
    """Uploads toy data and trains a tiny energy flow; returns the finished job."""
    theta, x = toy_data(seed=seed)
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    body = {
        "dataset_id": dataset["dataset_id"],
        "hyperparameters": {**TINY, **hyperparameters},
        "prior": PRIOR,
    }
    job = api.post("/v1/jobs", json=body).json()
    return wait_job(api, job["job_id"])

"""Failing fast: while Redis is stalled (SIGSTOP), probes, job calls and new sampling
requests answer in about 1 s."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from sbiserve.models import EnergyFlow, EnergyFlowConfig
from sbiserve.service.app import create_app
from sbiserve.service.embedded_redis import EmbeddedRedis
from sbiserve.service.settings import Settings
from sbiserve.service.stores import ModelStore

FAST_S = 1.5  # the API's Redis timeout is 0.75 s


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def timed(call: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    return response, time.monotonic() - started


def stored_model(data_dir: Path) -> str:
    """A tiny untrained model in the registry, so sampling gets as far as Redis."""
    flow = EnergyFlow(2, 2, EnergyFlowConfig(hidden_features=(8,)))
    store = ModelStore(data_dir)
    staging, model_id = store.stage(flow, metrics={})
    meta = {"family": flow.family, "theta_dim": 2, "x_dim": 2, "log_prob_kind": "none"}
    store.publish(staging, model_id, meta)
    return model_id


def test_calls_answer_fast_while_redis_is_stalled(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path, key_prefix="stall")
    theta = np.random.default_rng(0).uniform(-1, 1, (20, 2))
    sample = {"model": stored_model(tmp_path), "x": [0.0, 0.0], "num_samples": 5}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        dataset = client.post("/v1/datasets", json={"theta": theta.tolist(), "x": theta.tolist()})
        job = {"dataset_id": dataset.json()["dataset_id"]}
        job_id = client.post("/v1/jobs", json=job).json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200

        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        calls = {
            "readyz": lambda: client.get("/readyz"),
            "metrics": lambda: client.get("/metrics"),
            "job status": lambda: client.get(f"/v1/jobs/{job_id}"),
            "job list": lambda: client.get("/v1/jobs"),
            "new job": lambda: client.post("/v1/jobs", json=job),
            "cancel": lambda: client.delete(f"/v1/jobs/{job_id}"),
            "sampling": lambda: client.post("/v1/posterior/sample", json=sample),
        }
        for name, call in calls.items():
            response, elapsed = timed(call)
            assert elapsed < FAST_S, (name, elapsed)
            expected = 200 if name == "metrics" else 503  # metrics: the API's own figures
            assert response.status_code == expected, (name, response.text)

        os.kill(redis_server.process.pid, signal.SIGCONT)
        response, _ = timed(lambda: client.get(f"/v1/jobs/{job_id}"))
        assert response.status_code == 200, response.text
        assert client.get("/readyz").json()["error"]["message"].startswith("no live worker")

"""One live service for the client tests: a private Redis, one worker process and the API
on a free port (:class:`LocalStack`), plus one small energy flow trained through the
client's sbi drop-in, shared by every test module here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from sbiserve.client import Client, RemotePosterior, simulate_and_train
from sbiserve.service.app import create_app
from sbiserve.service.settings import Settings
from sbiserve.service.stack import LocalStack, free_port

# Small enough to train in seconds on two slow CPU cores; its quality is not under test.
SMALL = {"hidden_features": [32, 32], "max_epochs": 5, "batch_size": 128}
RNG = np.random.default_rng(0)


def moons(theta: Any) -> np.ndarray:
    """A two-moons-like numpy simulator: ``theta`` ``(N, 2)`` -> ``x`` ``(N, 2)``."""
    theta = np.asarray(theta, dtype=np.float64).reshape(-1, 2)
    angle = RNG.uniform(-np.pi / 2, np.pi / 2, len(theta))
    arc = 0.1 * np.column_stack((np.cos(angle), np.sin(angle))) + [0.25, 0.0]
    shift = np.column_stack((-np.abs(theta.sum(1)), theta[:, 1] - theta[:, 0])) / np.sqrt(2)
    return arc + shift + 0.01 * RNG.standard_normal(theta.shape)


def box_prior() -> Any:
    """``BoxUniform(-1, 1)^2`` from sbi."""
    import torch
    from sbi.utils import BoxUniform

    return BoxUniform(-torch.ones(2), torch.ones(2))


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = Settings(
        redis_url=None,
        data_dir=tmp_path_factory.mktemp("client-stack"),
        port=0,
        key_prefix="sbiserve-client-tests",
        heartbeat_s=0.5,
        sample_wait_ms=5,
        sample_timeout_s=30.0,
    )
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(scope="package")
def client(stack: LocalStack) -> Iterator[Client]:
    with Client(stack.url, timeout=60) as connected:
        yield connected


@pytest.fixture(scope="package")
def posterior(client: Client) -> RemotePosterior:
    """A small energy flow on 1,000 two-moons simulations, trained through sbi's API."""
    from sbi.utils.user_input_checks import process_simulator

    prior = box_prior()
    simulator = process_simulator(moons, prior, is_numpy_simulator=True)
    return simulate_and_train(
        client,
        prior,
        simulator,
        num_simulations=1_000,
        hyperparameters=SMALL,
        name="client-tests",
        simulation_batch_size=250,
        seed=0,
        progress=False,
        timeout=300,
    )


@contextmanager
def extra_api(settings: Settings) -> Iterator[str]:
    """Serves another API thread on ``settings`` (e.g. with an API key) on a free
    port, sharing the stack's Redis and workers; yields its URL."""
    settings = settings.model_copy(update={"port": free_port()})
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the extra API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class SampleRecorder(httpx.HTTPTransport):
    """A real transport that keeps the JSON body of every sampling request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/posterior/sample":
            self.bodies.append(json.loads(request.content))
        return super().handle_request(request)

"""``log_prob`` shapes of :class:`RemotePosterior` for a family with a density.

The server side is an :class:`httpx.MockTransport` that computes a known function, so
the reshaping between sbi's conventions and the API is checked value by value.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import torch

from sbiserve.client import Client, InvalidInputError, RemotePosterior

META = {"model_id": "m1", "family": "npe", "theta_dim": 2, "x_dim": 3, "log_prob_kind": "exact"}


def fake_service(request: httpx.Request) -> httpx.Response:
    """log q(theta | x) := theta_0 + 10 * theta_1 + 100 * x_0, per row."""
    if request.url.path == "/v1/models/m1":
        return httpx.Response(200, json=META)
    body = json.loads(request.content)
    theta, x = np.asarray(body["theta"]), np.asarray(body["x"])
    x = np.broadcast_to(x, (theta.shape[0], 3)) if x.ndim == 1 else x
    values = theta[:, 0] + 10 * theta[:, 1] + 100 * x[:, 0]
    return httpx.Response(200, json={"model_id": "m1", "log_prob": values.tolist()})


@pytest.fixture
def posterior() -> RemotePosterior:
    return RemotePosterior(
        Client("http://sbiserve", transport=httpx.MockTransport(fake_service)), "m1"
    )


def test_log_prob_at_one_observation(posterior: RemotePosterior) -> None:
    theta = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    values = posterior.log_prob(theta, x=torch.tensor([[0.5, 0.0, 0.0]]))
    assert torch.allclose(values, torch.tensor([71.0, 93.0]))
    assert posterior.log_prob(torch.tensor([1.0, 2.0]), x=torch.zeros(3)).shape == (1,)
    with pytest.raises(InvalidInputError) as raised:
        posterior.log_prob(torch.zeros(4, 3), x=torch.zeros(3))
    assert raised.value.field == "theta"


def test_log_prob_batched_pairs_draws_with_their_observation(posterior: RemotePosterior) -> None:
    theta = torch.arange(5 * 2 * 2, dtype=torch.float32).reshape(5, 2, 2)
    x = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    values = posterior.log_prob_batched(theta, x)
    expected = theta[..., 0] + 10 * theta[..., 1] + 100 * x[:, 0]
    assert values.shape == (5, 2) and torch.allclose(values, expected)


def test_unknown_sampling_options_are_refused(posterior: RemotePosterior) -> None:
    with pytest.raises(TypeError, match="num_chains"):
        posterior.sample((3,), x=torch.zeros(3), num_chains=4)


def recording(
    handler: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]
) -> httpx.MockTransport:
    """``handler`` as a mock transport that keeps every request it answers in ``seen``."""

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return httpx.MockTransport(record)


def test_null_log_prob_is_minus_infinity() -> None:
    def outside_support(request: httpx.Request) -> httpx.Response:
        # the server's JSON has no -inf: theta outside the prior's support comes as null
        return httpx.Response(200, json={"model_id": "m1", "log_prob": [-1.5, None, 0.25]})

    client = Client("http://sbiserve", transport=httpx.MockTransport(outside_support))
    values = client.log_prob("m1", np.zeros((3, 2)), np.zeros(3))
    assert isinstance(values, np.ndarray) and values.dtype == np.float64
    assert values[0] == -1.5 and values[2] == 0.25
    assert np.isneginf(values[1])  # not NaN
    tensor = client.log_prob("m1", torch.zeros(3, 2), np.zeros(3))
    assert tensor[1].item() == -np.inf


@pytest.mark.parametrize("one_x", [True, False])
def test_large_log_prob_is_split_under_the_request_caps(one_x: bool) -> None:
    seen: list[httpx.Request] = []
    cap_bytes, cap_rows = 4_000, 50
    client = Client(
        "http://sbiserve",
        transport=recording(fake_service, seen),
        max_request_bytes=cap_bytes,
        max_draws=cap_rows,
    )
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(333, 2)).astype(np.float32)
    x = rng.normal(size=3) if one_x else rng.normal(size=(333, 3))
    values = client.log_prob("m1", theta, x)
    x_rows = np.broadcast_to(x, (333, 3))
    theta64 = theta.astype(np.float64)
    expected = theta64[:, 0] + 10 * theta64[:, 1] + 100 * x_rows[:, 0]
    assert values.shape == (333,)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    assert len(seen) > 333 // cap_rows  # split by bytes too, not only by rows
    for request in seen:
        body = json.loads(request.content)
        assert len(request.content) <= cap_bytes and len(body["theta"]) <= cap_rows
        assert np.asarray(body["x"]).ndim == (1 if one_x else 2)


def test_log_prob_batched_is_split_too() -> None:
    seen: list[httpx.Request] = []
    client = Client("http://sbiserve", transport=recording(fake_service, seen), max_draws=7)
    posterior = RemotePosterior(client, "m1")
    theta = torch.arange(20 * 2 * 2, dtype=torch.float32).reshape(20, 2, 2)
    x = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    values = posterior.log_prob_batched(theta, x)
    expected = theta[..., 0] + 10 * theta[..., 1] + 100 * x[:, 0]
    assert values.shape == (20, 2) and torch.allclose(values, expected)
    requests = [r for r in seen if r.url.path.endswith("/log_prob")]
    assert len(requests) == 6  # 40 rows in requests of at most 7

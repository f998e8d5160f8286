"""``log_prob`` shapes of :class:`RemotePosterior` for a family with a density.

The server side is an :class:`httpx.MockTransport` that computes a known function, so
the reshaping between sbi's conventions and the API is checked value by value.
"""

from __future__ import annotations

import json

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

"""Server errors arrive as typed exceptions carrying the server's message, code and field."""

from __future__ import annotations

import numpy as np
import pytest

from sbiserve.client import (
    Client,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    RemotePosterior,
    SbiserveError,
    UnauthorizedError,
)
from sbiserve.service.stack import LocalStack

from .conftest import extra_api


def test_unknown_model_is_not_found(client: Client) -> None:
    with pytest.raises(NotFoundError) as raised:
        client.sample("no-such-model", [0.0, 0.0], num_samples=10)
    error = raised.value
    assert error.status == 404 and error.code == "not_found"
    assert "no-such-model" in error.message and "no-such-model" in str(error)
    with pytest.raises(NotFoundError):
        RemotePosterior(client, "no-such-model")
    with pytest.raises(NotFoundError):
        client.job("0" * 32)


def test_wrong_x_dimension_names_the_field(client: Client, posterior: RemotePosterior) -> None:
    with pytest.raises(InvalidInputError) as raised:  # found by the server
        client.sample(posterior.model_id, [0.0, 0.0, 0.0], num_samples=10)
    assert raised.value.field == "x" and raised.value.status == 422
    assert "x_dim=2" in raised.value.message
    with pytest.raises(InvalidInputError) as local:  # found before any request
        posterior.sample((10,), x=np.zeros(3))
    assert local.value.field == "x" and local.value.status is None
    with pytest.raises(InvalidInputError, match="sample_batched"):
        posterior.sample((10,), x=np.zeros((4, 2)))
    with pytest.raises(InvalidInputError) as nan:
        client.upload(np.zeros((3, 2)), np.array([[0, 1], [np.nan, 0], [1, 1]]))
    assert nan.value.field == "x" and "[1, 0]" in nan.value.message


def test_api_key_and_body_limit(stack: LocalStack, posterior: RemotePosterior) -> None:
    guarded = stack.settings.model_copy(update={"api_key": "lab-secret", "max_upload_bytes": 4096})
    with extra_api(guarded) as url:
        with pytest.raises(UnauthorizedError) as raised, Client(url, api_key="wrong") as c:
            c.models()
        assert raised.value.status == 401 and "API key" in raised.value.message
        with pytest.raises(UnauthorizedError), Client(url) as c:
            c.model(posterior.model_id)
        with Client(url, api_key="lab-secret", json_max_values=0) as c:
            # the same Redis and workers serve this API too
            assert c.sample(posterior.model_id, [0.0, 0.0], num_samples=5).shape == (5, 2)
            with pytest.raises(PayloadTooLargeError) as large:
                c.upload(np.zeros((1000, 2)), np.zeros((1000, 2)))
            assert large.value.status == 413 and isinstance(large.value, SbiserveError)

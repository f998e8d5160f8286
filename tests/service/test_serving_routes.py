"""The unversioned ``POST /posterior/sample`` answers exactly like ``/v1/posterior/sample``,
and ``GET /v1/limits`` publishes the server's caps; both in the OpenAPI document."""

from __future__ import annotations

import io

import httpx
import numpy as np

from sbiserve.service.stack import LocalStack

from .conftest import train


def test_the_unversioned_sample_route_is_an_alias(api: httpx.Client) -> None:
    model_id = train(api, seed=71)["model_id"]  # own data: others expect a fresh upload
    body = {"model": model_id, "x": [0.1, 0.2, 0.0], "num_samples": 50, "seed": 4}
    versioned = api.post("/v1/posterior/sample", json=body)
    alias = api.post("/posterior/sample", json=body)
    assert versioned.status_code == alias.status_code == 200
    assert alias.json() == versioned.json()
    npy = api.post("/posterior/sample", json=body, headers={"Accept": "application/x-npy"})
    draws = np.load(io.BytesIO(npy.content), allow_pickle=False)
    np.testing.assert_array_equal(draws, np.asarray(versioned.json()["samples"], np.float32))
    bad = api.post("/posterior/sample", json={**body, "num_samples": 0})
    assert (
        bad.status_code == 422
        and bad.json() == api.post("/v1/posterior/sample", json={**body, "num_samples": 0}).json()
    )
    keyless = httpx.post(api.base_url.join("/posterior/sample"), json=body)
    assert keyless.status_code == 401  # the API key applies to the alias too


def test_limits_are_published(api: httpx.Client, stack: LocalStack) -> None:
    limits = api.get("/v1/limits").json()
    settings = stack.settings
    assert limits["max_num_samples"] == settings.max_num_samples == 50_000
    assert limits["max_request_bytes"] == settings.max_request_bytes
    assert limits["max_total_draws"] == settings.max_total_draws
    paths = api.get("/openapi.json").json()["paths"]
    assert (
        "/v1/limits" in paths and "alias" in paths["/posterior/sample"]["post"]["summary"].lower()
    )

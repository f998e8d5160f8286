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


def test_a_moved_or_deleted_alias_is_seen_by_the_next_request(api: httpx.Client) -> None:
    first, second = (train(api, seed=seed)["model_id"] for seed in (72, 73))
    body = {"model": "moving", "x": [0.1, 0.2, 0.0], "num_samples": 2}

    def answered_by() -> str | int:
        response = api.post("/v1/posterior/sample", json=body)
        return response.json()["model_id"] if response.status_code == 200 else response.status_code

    assert answered_by() == 404
    api.put(f"/v1/models/{first}/aliases/moving").raise_for_status()
    assert answered_by() == first
    api.put(f"/v1/models/{second}/aliases/moving").raise_for_status()
    assert answered_by() == second  # at once, though the first answer is remembered
    assert api.delete(f"/v1/models/{second}/aliases/moving").status_code == 204
    assert answered_by() == 404
    api.put(f"/v1/models/{first}/aliases/moving").raise_for_status()
    assert answered_by() == first
    assert api.delete(f"/v1/models/{first}").status_code == 204
    assert answered_by() == 404
    gone = api.post("/v1/posterior/sample", json={**body, "model": first})
    assert gone.status_code == 404 and gone.json()["error"]["field"] == "model"

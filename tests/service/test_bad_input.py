"""Bad input gets a 4xx with a message saying what is wrong, and nothing stored changes."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path

import httpx
import numpy as np
import pytest

from sbiserve.service.stack import LocalStack

from .conftest import PRIOR, toy_data, train


def snapshot(root: Path) -> dict[str, str]:
    """Hash of every stored file (staging excluded)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "tmp" not in path.relative_to(root).parts and path.suffix != ".log":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def model_id(stack: LocalStack) -> str:
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": "test-key-1234"}) as api:
        job = train(api, seed=5)
    assert job["status"] == "succeeded", job
    return str(job["model_id"])


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def post_json(api: httpx.Client, path: str, body: dict) -> httpx.Response:
    """Posts JSON as Python writes it, NaN and Infinity included (httpx refuses to)."""
    return api.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def expect(response: httpx.Response, status: int, *words: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error["message"], (word, error)
    if field is not None:
        assert error["field"] == field, error


def test_bad_requests_change_nothing(api: httpx.Client, stack: LocalStack, model_id: str) -> None:
    before = snapshot(stack.settings.data_dir)
    theta, x = toy_data(50)
    nan_theta = theta.copy()
    nan_theta[7, 1] = np.nan
    expect(
        post_json(api, "/v1/datasets", {"theta": nan_theta.tolist(), "x": x.tolist()}),
        422,
        "NaN",
        "[7, 1]",
        field="theta",
    )
    inf_x = x.copy()
    inf_x[3, 2] = np.inf
    files = {"theta": ("t.npy", npy(theta)), "x": ("x.npy", npy(inf_x))}
    expect(api.post("/v1/datasets", files=files), 422, "NaN/inf", "[3, 2]", field="x")
    expect(
        api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x[:40].tolist()}),
        422,
        "50 rows",
        "40",
        field="x",
    )
    objects = np.array([{"a": 1}, None], dtype=object)
    files = {"theta": ("t.npy", npy(objects)), "x": ("x.npy", npy(x))}
    expect(api.post("/v1/datasets", files=files), 400, "pickle", field="theta")
    raw_pickle = {"theta": ("t.npy", pickle.dumps(theta)), "x": ("x.npy", npy(x))}
    expect(api.post("/v1/datasets", files=raw_pickle), 400, "pickle", field="theta")
    expect(
        api.post("/v1/datasets", files={"file": ("d.npz", b"PK\x03\x04garbage")}),
        400,
        ".npz",
        field="file",
    )
    bad_json = api.post(
        "/v1/datasets", content=b'{"theta": [[1, 2]', headers={"content-type": "application/json"}
    )
    expect(bad_json, 400, "malformed JSON")
    expect(
        api.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}),
        400,
        "malformed JSON",
    )

    sample = {"model": model_id, "x": [0.1, 0.2, 0.3], "num_samples": 10}
    expect(
        api.post("/v1/posterior/sample", json={**sample, "x": [0.1, 0.2]}),
        422,
        "x_dim=3",
        field="x",
    )
    expect(
        api.post("/v1/posterior/sample", json={**sample, "x": [[0.1, 0.2]]}),
        422,
        "3 column",
        field="x",
    )
    expect(
        post_json(api, "/v1/posterior/sample", {**sample, "x": [0.1, float("nan"), 0.3]}),
        422,
        "NaN",
        field="x",
    )
    expect(
        api.post("/v1/posterior/sample", json={**sample, "model": "no-such-model"}),
        404,
        "no-such-model",
        field="model",
    )
    expect(
        api.post("/v1/posterior/sample", json={**sample, "num_samples": 60_000}),
        422,
        "over the limit",
        field="num_samples",
    )
    expect(
        api.post("/v1/posterior/sample", json={**sample, "num_samples": 0}),
        422,
        "num_samples",
        field="num_samples",
    )
    expect(api.post("/v1/jobs", json={"dataset_id": "f" * 24}), 404, "unknown dataset")
    dataset_id = api.get(f"/v1/models/{model_id}").json()["dataset_id"]
    expect(
        api.post("/v1/jobs", json={"dataset_id": dataset_id, "family": "nope"}),
        422,
        "unknown family",
        field="family",
    )
    expect(
        api.post("/v1/jobs", json={"dataset_id": dataset_id, "hyperparameters": {"hiden": 1}}),
        422,
        "hiden",
        field="hyperparameters",
    )
    narrow = {**PRIOR, "low": [-0.5, -1], "high": [1, 1]}
    expect(
        api.post("/v1/jobs", json={"dataset_id": dataset_id, "prior": narrow}),
        422,
        "outside the prior",
        field="prior",
    )
    expect(api.get("/v1/jobs/does-not-exist"), 404, "unknown job")
    expect(api.delete("/v1/datasets/" + "0" * 24), 404, "unknown dataset")

    big = {"theta": np.zeros((100_000, 2)).tolist(), "x": np.zeros((100_000, 3)).tolist()}
    expect(api.post("/v1/datasets", json=big), 413, "over the limit")
    huge = {"theta": ("t.npy", npy(np.zeros((300_000, 2)))), "x": ("x.npy", npy(x))}
    expect(api.post("/v1/datasets", files=huge), 413, "over the limit")

    with httpx.Client(base_url=stack.url) as anonymous:
        expect(anonymous.get("/v1/models"), 401, "API key")
        expect(anonymous.get("/v1/models", headers={"X-API-Key": "wrong"}), 401, "API key")
        assert anonymous.get("/livez").status_code == 200

    assert snapshot(stack.settings.data_dir) == before
    # The model still answers after all of that.
    assert api.post("/v1/posterior/sample", json=sample).status_code == 200


def test_edge_cases_get_precise_answers(api: httpx.Client, model_id: str) -> None:
    theta, x = toy_data(60, seed=11)
    theta[:, 0] *= 0.3
    theta[0, 0] = 0.3  # exactly on the prior's bound, which float32 cannot hold exactly
    dataset = api.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()}).json()
    body = {
        "dataset_id": dataset["dataset_id"],
        "hyperparameters": {"hidden_features": [8], "max_epochs": 1},
        "prior": {"type": "box", "low": [-1, -1], "high": [0.3, 1]},
    }
    expect(
        api.post("/v1/jobs", json={**body, "hyperparameters": {"max_epochs": None}}),
        422,
        "max_epochs",
        field="hyperparameters",
    )
    headers = {"Idempotency-Key": "edge-1"}
    accepted = api.post("/v1/jobs", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    expect(
        api.post("/v1/jobs", json={**body, "name": "other"}, headers=headers),
        409,
        "different request",
        field="Idempotency-Key",
    )
    again = api.post("/v1/jobs", json=body, headers=headers)
    assert again.json()["job_id"] == accepted.json()["job_id"]
    api.delete(f"/v1/jobs/{accepted.json()['job_id']}")

    expect(api.get("/v1/jobs", params={"limit": 0}), 422, "limit", field="limit")
    expect(api.put(f"/v1/models/{model_id}/aliases/bad%0A"), 422, "alias")

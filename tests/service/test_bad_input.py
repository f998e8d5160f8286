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
    expect(api.post("/v1/jobs", json={"dataset_id": "f" * 24}), 404, "unknown dataset")
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


# Sampling requests that must be refused: (case, change to a good body, status, words in
# the message, field). Each row runs on its own, on the versioned route and on its alias.
BAD_SAMPLES = [
    ("x of the wrong length", {"x": [0.1, 0.2]}, 422, ("x_dim=3",), "x"),
    ("x rows of the wrong width", {"x": [[0.1, 0.2]]}, 422, ("3 column",), "x"),
    ("NaN in x", {"x": [0.1, float("nan"), 0.3]}, 422, ("NaN",), "x"),
    ("unknown model", {"model": "no-such-model"}, 404, ("no-such-model",), "model"),
    ("num_samples over the cap", {"num_samples": 60_000}, 422, ("over the limit",), "num_samples"),
    ("num_samples zero", {"num_samples": 0}, 422, ("num_samples",), "num_samples"),
    ("num_samples a string", {"num_samples": "10"}, 422, ("num_samples",), "num_samples"),
]


@pytest.mark.parametrize("path", ["/v1/posterior/sample", "/posterior/sample"])
@pytest.mark.parametrize(
    ("change", "status", "words", "field"),
    [row[1:] for row in BAD_SAMPLES],
    ids=[row[0] for row in BAD_SAMPLES],
)
def test_bad_sample_requests(
    api: httpx.Client,
    model_id: str,
    path: str,
    change: dict,
    status: int,
    words: tuple[str, ...],
    field: str,
) -> None:
    body = {"model": model_id, "x": [0.1, 0.2, 0.3], "num_samples": 10, **change}
    expect(post_json(api, path, body), status, *words, field=field)


# Training requests that must be refused, on the dataset the module's model was trained on.
BAD_JOBS = [
    ("unknown family", {"family": "nope"}, ("unknown family",), "family"),
    ("unknown option", {"hyperparameters": {"hiden": 1}}, ("hiden",), "hyperparameters"),
    (
        "diffusion levels for the semi-autoregressive flow",
        {"family": "semi_autoregressive_energy_flow", "hyperparameters": {"diffusion_steps": 3}},
        ("diffusion_steps", "one pass per block"),
        "hyperparameters",
    ),
    (
        "device, the worker's choice",
        {"hyperparameters": {"device": "cpu"}},
        ("device",),
        "hyperparameters",
    ),
    (
        "prior narrower than the data",
        {"prior": {**PRIOR, "low": [-0.5, -1], "high": [1, 1]}},
        ("outside the prior",),
        "prior",
    ),
]


@pytest.mark.parametrize(
    ("change", "words", "field"),
    [row[1:] for row in BAD_JOBS],
    ids=[row[0] for row in BAD_JOBS],
)
def test_bad_job_requests(
    api: httpx.Client, model_id: str, change: dict, words: tuple[str, ...], field: str
) -> None:
    dataset_id = api.get(f"/v1/models/{model_id}").json()["dataset_id"]
    response = api.post("/v1/jobs", json={"dataset_id": dataset_id, **change})
    expect(response, 422, *words, field=field)


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

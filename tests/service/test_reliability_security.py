"""Security: no credential in any answer, no detail in a 500, bounded uploads, strict numbers.

The API runs in-process (no worker): every check here is answered before a worker or,
for the credential checks, a reachable Redis would be needed.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sbiserve.service.app import create_app
from sbiserve.service.errors import ServiceError
from sbiserve.service.settings import Settings

from .test_bad_input import snapshot

PASSWORD = "hunter2-secret"
ROWS = 1_000


def make_app(data_dir: Path) -> FastAPI:
    """The API on a Redis URL with a password, where nothing listens."""
    settings = Settings(
        redis_url=f"redis://:{PASSWORD}@127.0.0.1:1/0",
        data_dir=data_dir,
        max_dataset_bytes=64 * 2**10,
        max_dataset_rows=ROWS,
    )
    return create_app(settings)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return make_app(tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def stored_dataset(client: TestClient) -> str:
    theta = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    answer = client.post("/v1/datasets", json={"theta": theta.tolist(), "x": theta.tolist()})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["dataset_id"])


def test_no_credentials_in_any_answer(client: TestClient) -> None:
    dataset_id = stored_dataset(client)
    answers = [
        client.get("/readyz"),
        client.get("/v1/jobs/some-job"),
        client.get("/v1/jobs"),
        client.post("/v1/jobs", json={"dataset_id": dataset_id}),
        client.delete(f"/v1/datasets/{dataset_id}"),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert PASSWORD not in answer.text and "redis://***@127.0.0.1:1" in answer.text
    assert PASSWORD not in client.get("/metrics").text


def test_internal_errors_give_a_reference_not_the_details(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = f"secret detail redis://:{PASSWORD}@somewhere"

    def broken() -> None:
        raise RuntimeError(secret)

    def worker_failed() -> None:
        error = ServiceError(f"the worker failed: MemoryError: {secret}")
        raise error

    app.add_api_route("/broken", broken)
    app.add_api_route("/worker-failed", worker_failed)
    with caplog.at_level(logging.ERROR, logger="sbiserve.api"):
        for path in ("/broken", "/worker-failed"):
            answer = client.get(path)
            assert answer.status_code == 500
            error = answer.json()["error"]
            assert error["code"] == "internal_error" and "secret" not in answer.text
            reference = answer.headers["X-Sbiserve-Error-Id"]
            assert reference in error["message"]
            logged = [r for r in caplog.records if reference in r.getMessage()]
            assert logged and "secret detail" in logged[0].getMessage()
            assert PASSWORD not in logged[0].getMessage()


def zip_bomb(rows: int) -> bytes:
    """An .npz of zeros: a few KB that decompress to ``rows * 16`` bytes per array."""
    return npz(theta=np.zeros((rows, 2)), x=np.zeros((rows, 2)))


def huge_header(shape: tuple[int, ...]) -> bytes:
    """A valid .npy whose header declares ``shape`` but holds two values."""
    return npy(np.zeros(2)).replace(b"(2,)", repr(shape).encode(), 1)


def test_oversized_uploads_refused_before_allocation(client: TestClient, tmp_path: Path) -> None:
    stored_dataset(client)
    before = snapshot(tmp_path)
    small = np.zeros((10, 2))
    bomb = zip_bomb(200_000)  # 6.4 MB decoded, over the 64 KiB limit
    assert len(bomb) < 30_000
    refused = [
        (client.post("/v1/datasets", files={"file": ("d.npz", bomb)}), 413),
        (client.post("/v1/datasets", files={"file": ("d.npz", zip_bomb(ROWS + 1))}), 413),
        (
            client.post(
                "/v1/datasets",
                files={"theta": ("t.npy", huge_header((10**13, 2))), "x": ("x.npy", npy(small))},
            ),
            413,
        ),
        (
            client.post(  # under the limits, but more than the file holds
                "/v1/datasets",
                files={"theta": ("t.npy", huge_header((500, 2))), "x": ("x.npy", npy(small))},
            ),
            400,
        ),
    ]
    for answer, status in refused:
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["field"] in ("file:theta", "file:x", "theta")
    assert snapshot(tmp_path) == before
    fine = client.post("/v1/datasets", files={"file": ("d.npz", npz(theta=small + 1, x=small))})
    assert fine.status_code == 201, fine.text


def test_npz_member_that_lies_about_its_size(client: TestClient) -> None:
    """A zip entry whose data is shorter than its header says: a 400, nothing allocated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("theta.npy", huge_header((500, 2)))
        archive.writestr("x.npy", npy(np.zeros((500, 2))))
    answer = client.post("/v1/datasets", files={"file": ("d.npz", buffer.getvalue())})
    assert answer.status_code == 400, answer.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/datasets", {"theta": [["0.1", "0.2"], [0.3, 0.4]], "x": [[1], [2]]}, "theta"),
        ("/v1/datasets", {"theta": [[0.1], [0.2]], "x": [[True], [False]]}, "x"),
        ("/v1/posterior/sample", {"model": "m", "x": [0.0, 0.0], "seed": True}, "seed"),
        ("/v1/posterior/sample", {"model": "m", "x": [0.0, 0.0], "seed": False}, "seed"),
        ("/v1/posterior/sample", {"model": "m", "x": ["0.0", 0.0]}, "x"),
        ("/v1/posterior/sample", {"model": "m", "x": [0.0], "num_samples": "5"}, "num_samples"),
        ("/v1/posterior/log_prob", {"model": "m", "theta": [[True]], "x": [0.0]}, "theta"),
        (
            "/v1/jobs",
            {"dataset_id": "0" * 24, "prior": {"low": ["-1"], "high": [1]}},
            "prior",
        ),
    ],
)
def test_numbers_are_strict(
    client: TestClient, tmp_path: Path, path: str, body: dict, field: str
) -> None:
    before = snapshot(tmp_path)
    answer = client.post(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith(field), answer.text
    assert snapshot(tmp_path) == before

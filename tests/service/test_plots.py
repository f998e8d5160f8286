"""Pictures over HTTP: model plots and the posterior pair plot are PNGs of the asked size."""

from __future__ import annotations

import struct
from typing import Any

import httpx
import pytest

from sbiserve.service.stack import LocalStack

from .conftest import API_KEY, train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    assert data[:8] == PNG_SIGNATURE, data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def model_id(stack: LocalStack) -> str:
    with httpx.Client(base_url=stack.url, headers={"X-API-Key": API_KEY}, timeout=60) as api:
        job = train(api, seed=21)
    assert job["status"] == "succeeded", job
    return str(job["model_id"])


@pytest.mark.parametrize("name", ["training", "sbc", "coverage"])
def test_model_plots_are_pngs_of_the_default_size(
    api: httpx.Client, model_id: str, name: str
) -> None:
    answer = api.get(f"/v1/models/{model_id}/plots/{name}.png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert png_size(answer.content) == (800, 500)


def test_model_plots_take_a_size(api: httpx.Client, model_id: str) -> None:
    answer = api.get(f"/v1/models/{model_id}/plots/sbc.png", params={"width": 640, "height": 360})
    assert png_size(answer.content) == (640, 360)
    too_big = api.get(f"/v1/models/{model_id}/plots/sbc.png", params={"width": 10_000})
    assert too_big.status_code == 422


def test_an_unknown_plot_is_a_404_naming_the_known_ones(api: httpx.Client, model_id: str) -> None:
    for filename in ("histogram.png", "sbc.svg", "sbc"):
        answer = api.get(f"/v1/models/{model_id}/plots/{filename}")
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert error["code"] == "not_found"
        assert f"unknown plot '{filename}'" in error["message"]
        assert "training.png, sbc.png, coverage.png" in error["message"]


def test_plots_of_an_unknown_model_are_a_404(api: httpx.Client) -> None:
    answer = api.get("/v1/models/no-such-model/plots/training.png")
    assert answer.status_code == 404
    assert "unknown model" in answer.json()["error"]["message"]


def test_plots_need_the_api_key(stack: LocalStack, model_id: str) -> None:
    answer = httpx.get(f"{stack.url}/v1/models/{model_id}/plots/training.png")
    assert answer.status_code == 401


def test_posterior_pair_plot(api: httpx.Client, model_id: str) -> None:
    body: dict[str, Any] = {"model": model_id, "x": [0.1, -0.2, 0.0], "seed": 3}
    answer = api.post("/v1/posterior/plot", json=body)
    assert answer.status_code == 200, answer.text
    assert png_size(answer.content) == (800, 800)
    assert answer.headers["x-sbiserve-seed"] == "3"
    sized = api.post(
        "/v1/posterior/plot",
        json={**body, "theta": [0.1, -0.2], "width": 500, "height": 400, "num_samples": 500},
    )
    assert png_size(sized.content) == (500, 400)


def test_posterior_plot_refuses_bad_input(api: httpx.Client, model_id: str) -> None:
    batch = api.post("/v1/posterior/plot", json={"model": model_id, "x": [[0, 0, 0], [1, 1, 1]]})
    assert batch.status_code == 422
    wrong_dim = api.post("/v1/posterior/plot", json={"model": model_id, "x": [0, 0]})
    assert wrong_dim.status_code == 422 and wrong_dim.json()["error"]["field"] == "x"
    theta = api.post(
        "/v1/posterior/plot", json={"model": model_id, "x": [0, 0, 0], "theta": [1, 2, 3]}
    )
    assert theta.status_code == 422 and theta.json()["error"]["field"] == "theta"

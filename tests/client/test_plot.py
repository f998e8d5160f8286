"""The client's picture helpers: ``Client.plot`` saves PNGs the service draws, and
``Client.diagnostics`` returns a model's calibration report; names go up with uploads."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from sbiserve.client import Client, InvalidInputError, NotFoundError, RemotePosterior


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_model_plots_are_saved(client: Client, posterior: RemotePosterior, tmp_path: Path) -> None:
    for name in ("training", "sbc", "coverage"):
        target = tmp_path / f"{name}.png"
        png = client.plot(posterior.model_id, name, target)
        assert target.read_bytes() == png
        assert png_size(png) == (800, 500)
    assert png_size(client.plot(posterior.model_id, "sbc", width=300, height=200)) == (300, 200)


def test_posterior_pair_plot(client: Client, posterior: RemotePosterior, tmp_path: Path) -> None:
    png = client.plot(
        posterior.model_id, "posterior", tmp_path / "pair.png", x=np.zeros(2), theta=[0.1, 0.2]
    )
    assert png_size(png) == (800, 800)
    assert (tmp_path / "pair.png").stat().st_size == len(png)


def test_plot_arguments_are_checked(client: Client, posterior: RemotePosterior) -> None:
    with pytest.raises(InvalidInputError, match="unknown plot 'corner'"):
        client.plot(posterior.model_id, "corner")
    with pytest.raises(InvalidInputError, match="needs one observation x"):
        client.plot(posterior.model_id, "posterior")
    with pytest.raises(NotFoundError):
        client.plot("no-such-model", "training")


def test_diagnostics_come_with_the_model(client: Client, posterior: RemotePosterior) -> None:
    report = client.diagnostics(posterior.model_id)
    assert report is not None
    assert len(report["sbc_p_values"]) == 2
    assert isinstance(report["verdict"], str)


@pytest.mark.parametrize("json_max_values", [100_000, 10])
def test_uploads_carry_names(client: Client, json_max_values: int) -> None:
    small = Client(client.base_url, json_max_values=json_max_values)
    rng = np.random.default_rng(json_max_values)
    theta, x = rng.uniform(size=(20, 2)), rng.normal(size=(20, 3))
    dataset = small.upload(theta, x, theta_names=["a", "b"], x_names=["u", "v", "w"])
    assert dataset["theta_names"] == ["a", "b"]
    assert dataset["x_names"] == ["u", "v", "w"]
    small.close()


def test_the_posterior_names_its_parameters(posterior: RemotePosterior) -> None:
    names = posterior.meta.get("theta_names") or ["theta_1", "theta_2"]
    assert posterior.theta_names == names and len(posterior.x_names) == posterior.x_dim
    draws = posterior.sample((7,), x=np.zeros(posterior.x_dim), seed=1)
    named = posterior.named(draws)
    assert list(named) == names and named[names[1]].shape == (7,)
    assert np.allclose(named[names[0]], np.asarray(draws)[:, 0])
    with pytest.raises(ValueError, match="theta_dim"):
        posterior.named(np.zeros((3, posterior.theta_dim + 1)))

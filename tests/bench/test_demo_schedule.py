"""The demo-schedule harness: its exact two-moons posterior and one tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import demo_schedule, records
from sbiserve.service.simulators import two_moons_simulator


@pytest.mark.parametrize("x_o", demo_schedule.OBSERVATIONS)
def test_reference_draws_invert_the_simulator(x_o: tuple[float, float]) -> None:
    theta = demo_schedule.reference_posterior(4000, x_o).numpy()
    assert theta.shape == (4000, 2) and np.all(np.abs(theta) <= 1.0)
    # Each draw must leave a crescent point the simulator can produce: x_o minus the
    # shift of theta lies at radius ~0.1 (noise sd 0.01) right of (0.25, 0).
    point_0 = x_o[0] + np.abs(theta[:, 0] + theta[:, 1]) / math.sqrt(2)
    point_1 = x_o[1] - (theta[:, 1] - theta[:, 0]) / math.sqrt(2)
    radius = np.hypot(point_0 - 0.25, point_1)
    assert np.all(point_0 >= 0.25 - 1e-6)
    assert np.all(np.abs(radius - 0.1) < 0.06)
    assert abs(radius.mean() - 0.1) < 0.002
    # Both branches (the sign of theta_1 + theta_2) are drawn, evenly where neither is cut.
    assert 0.4 < np.mean(theta.sum(axis=1) > 0) < 0.6


def test_reference_draws_reproduce_the_observation() -> None:
    # Simulating from the reference posterior must give data centred on x_o.
    x_o = (0.0, 0.3)
    theta = demo_schedule.reference_posterior(4000, x_o).numpy()
    x = two_moons_simulator(theta, np.random.default_rng(3))
    # Not equal to x_o draw by draw (new noise), but the same crescent geometry: the
    # simulated x lie within the crescent's reach (radius 0.1 + 3 sd) of x_o.
    assert np.all(np.hypot(x[:, 0] - x_o[0], x[:, 1] - x_o[1]) < 0.27)


@pytest.mark.slow
def test_one_run_writes_a_row_and_a_picture(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    argv = ["tiny", "--options", '{"max_epochs": 2}', "--num-simulations", "300"]
    try:
        demo_schedule.main([*argv, "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    (row,) = records.read_rows(tmp_path / demo_schedule.RESULTS_FILE)
    assert row["tag"] == "tiny" and row["epochs"] == 2
    assert set(row["c2st"]) == {str(x) for x in demo_schedule.OBSERVATIONS}
    assert all(0.5 <= c <= 1.0 for c in row["c2st"].values())
    assert (tmp_path / "demo_tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert row["torch_threads"] == 1  # the harness measures one thread

"""The benchmark's simulation cache: one simulator run per task, budget and seed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from bench import tasks


def test_each_simulation_runs_once_and_loads_the_same_tensors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []

    def simulate(task: object, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append((num, seed))
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(num, 2, generator=generator), torch.rand(num, 3, generator=generator)

    monkeypatch.setattr(tasks, "simulate", simulate)
    monkeypatch.setattr(tasks, "load_task", lambda name: name)
    first = tasks.cached_simulation("two_moons", 5, 0, tmp_path)
    again = tasks.cached_simulation("two_moons", 5, 0, tmp_path)
    other = tasks.cached_simulation("two_moons", 5, 1, tmp_path)
    assert calls == [(5, 0), (5, 1)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert first[0].shape == (5, 2) and first[1].shape == (5, 3)
    assert not torch.equal(first[0], other[0])
    assert not list(tmp_path.glob("*.partial"))


def _simulate_in_child(cache: str) -> None:
    tasks.cached_simulation("two_moons", 50, 3, Path(cache))


def test_processes_share_one_simulation(tmp_path: Path) -> None:
    # Two processes asking at once: one runs the real simulator, both get its file.
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_simulate_in_child, args=(str(tmp_path),)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert len(list(tmp_path.glob("two_moons-50-3-*.pt"))) == 1
    theta, x = tasks.cached_simulation("two_moons", 50, 3, tmp_path)
    direct = tasks.simulate(tasks.load_task("two_moons"), 50, 3)
    assert torch.equal(theta, direct[0]) and torch.equal(x, direct[1])

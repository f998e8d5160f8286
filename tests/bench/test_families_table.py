"""The all-methods table of the quality report, from synthetic rows."""

from __future__ import annotations

from typing import Any

from bench.quality_report import families_table


def row(task: str, method: str, c2st: float, cpu: float, cap: float | None = None) -> dict:
    out: dict[str, Any] = {
        "task": task,
        "budget": 1000,
        "seed": 0,
        "method": method,
        "error": None,
        "c2st_mean": c2st,
        "train_seconds": cpu,
        "train_cpu_seconds": cpu,
        "sample_seconds_mean": 0.01 if method != "npe_nsf" else 0.2,
        "caps": {"max_seconds": cap},
    }
    return out


def test_families_table_compares_every_method_with_npe_and_counts_the_goal() -> None:
    rows = [
        row("two_moons", "npe_nsf", 0.60, 10.0),
        row("two_moons", "energy_flow", 0.58, 20.0),
        row("two_moons", "ffjord", 0.70, 40.0, cap=40.0),
        row("slcp", "npe_nsf", 0.90, 10.0),
        row("slcp", "energy_flow", 0.94, 40.0),
        row("slcp", "ffjord", 0.88, 20.0),
        row("slcp", "energy_flow", 0.90, 40.0) | {"budget": 10000},  # another budget
    ]
    table = families_table(rows, 1000)
    assert table[0] == "| task (1,000) | npe_nsf | energy_flow | ffjord |"
    by_task = {line.split(" | ")[0].strip("| "): line for line in table[2:]}
    assert "**0.580** (-0.020; 20 s)" in by_task["two_moons"]
    assert "0.700 (+0.100; 40 s, cap)" in by_task["two_moons"]  # the cap ended it
    assert "**0.880** (-0.020; 20 s)" in by_task["slcp"]
    within = by_task["within 0.05 of npe_nsf (or better)"]
    assert within.endswith("| – | 2 of 2 | 1 of 2 |")
    assert "2.0-4.0× (1 of 2 within 3×)" in by_task["training CPU against npe_nsf"]
    assert families_table(rows, 10000) == []  # no baseline there

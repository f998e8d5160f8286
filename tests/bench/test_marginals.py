"""The per-parameter C2ST harness: it points at the parameter that is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench import marginals


def test_a_shifted_parameter_shows_in_its_marginal_and_its_pairs_only() -> None:
    torch.manual_seed(0)
    reference = torch.randn(600, 3)
    draws = torch.randn(600, 3)
    draws[:, 1] += 2.5  # only parameter 1 is off
    scores = marginals.scores(reference, draws, pairs=True)
    assert scores["marginals"][1] > 0.7 and scores["joint"] > 0.7
    assert abs(scores["marginals"][0] - 0.5) < 0.07 and abs(scores["marginals"][2] - 0.5) < 0.07
    assert scores["pairs"]["0,1"] > 0.7 and scores["pairs"]["1,2"] > 0.7
    assert abs(scores["pairs"]["0,2"] - 0.5) < 0.07


def test_one_tiny_run_writes_its_row(tmp_path: Path) -> None:
    out = tmp_path / "marginals.jsonl"
    argv = ["two_moons", "200", "energy_flow", "--tag", "tiny", "--num-observations", "1"]
    argv += ["--num-draws", "500", "--pairs", "--out", str(out), "--save-draws", str(tmp_path)]
    marginals.main([*argv, "--options", json.dumps({"max_steps": 5, "hidden_features": [8]})])
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["tag"] == "tiny" and row["task"] == "two_moons" and row["budget"] == 200
    assert len(row["joint"]) == 1 and len(row["marginals"][0]) == 2
    assert set(row["pairs"][0]) == {"0,1"}
    assert row["hyperparameters"]["train"]["max_steps"] == 5
    assert (tmp_path / "energy_flow_two_moons_200_1.pt").exists()

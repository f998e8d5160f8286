"""Runs the benchmarks' smoke modes end to end and checks what they write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import quality, records, speed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUALITY_METHODS = ["energy_flow", "npe_nsf"]
SPEED_METHODS = ["energy_flow", "semi_autoregressive_energy_flow", "npe_nsf"]


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def _check_table(markdown: str, columns: list[str]) -> None:
    header = next(ln for ln in markdown.splitlines() if ln.startswith("| task |"))
    assert all(column in header for column in columns)
    assert "|---|" in markdown


@pytest.mark.slow
def test_quality_smoke(tmp_path: Path) -> None:
    # Two processes side by side: the cells run in a spawned pool, one torch thread each.
    argv = ["--smoke", "--methods", ",".join(QUALITY_METHODS), "--out", str(tmp_path)]
    quality.main([*argv, "--jobs", "2"])
    rows = records.read_rows(tmp_path / quality.RESULTS_FILE)
    assert sorted(r["method"] for r in rows) == sorted(QUALITY_METHODS)
    for row in rows:
        assert row["error"] is None, row["error"]
        assert row["c2st_kind"] == "fast" and row["jobs"] == 2 and row["torch_threads"] == 1
        assert (row["task"], row["budget"], row["seed"]) == ("two_moons", 200, 0)
        assert len(row["c2st"]) == 2 and all(0.0 <= c <= 1.0 for c in row["c2st"])
        assert row["c2st_mean"] == pytest.approx(sum(row["c2st"]) / 2)
        assert row["train_seconds"] > 0 and row["epochs"] >= 1
        assert row["sample_seconds_mean"] > 0 and row["draws_obtained_min"] == row["num_draws"]
        assert row["device"] and row["git"]["commit"]
        assert {"torch", "sbi", "sbiserve"} <= set(row["versions"])
        assert "train" in row["hyperparameters"]

    quality.main(argv)  # everything is done already: nothing is appended
    assert len(records.read_rows(tmp_path / quality.RESULTS_FILE)) == len(rows)

    _check_table((tmp_path / "quality.md").read_text(), QUALITY_METHODS)
    _check_png(tmp_path / "quality_c2st.png")
    _check_png(tmp_path / "quality_train_time.png")


@pytest.mark.slow
def test_speed_smoke(tmp_path: Path) -> None:
    speed.main(["--smoke", "--methods", ",".join(SPEED_METHODS), "--out", str(tmp_path)])
    rows = records.read_rows(tmp_path / speed.RESULTS_FILE)
    assert {r["method"] for r in rows} == set(SPEED_METHODS)
    assert {(r["theta_dim"], r["num_observations"]) for r in rows} == {
        (2, 1),
        (2, 10),
        (3, 1),
        (3, 10),
    }
    for row in rows:
        assert row["draws_per_second"] > 0 and row["untrained"] is True
        assert row["device"] and {"torch", "sbi", "sbiserve"} <= set(row["versions"])
    markdown = (tmp_path / "speed.md").read_text()
    assert "| D | B |" in markdown and "Ratio" in markdown
    _check_png(tmp_path / "speed.png")


def test_curves_keeps_every_epoch_and_a_summary_row(tmp_path: Path) -> None:
    from bench import curves

    options = {"max_epochs": 3, "min_steps": 0, "hidden_features": [16], "restore_best": False}
    argv = ["two_moons", "200", "tiny", "--options", json.dumps(options), "--out", str(tmp_path)]
    curves.main([*argv, "--observations", "1", "--num-draws", "300"])
    (row,) = records.read_rows(tmp_path / curves.RESULTS_FILE)
    assert (row["task"], row["budget"], row["tag"], row["epochs"]) == ("two_moons", 200, "tiny", 3)
    assert len(row["c2st"]) == 1 and 0.0 <= row["c2st"][0] <= 1.0
    # Sized as a quality cell is (two parameters: four heads), the options on top.
    assert row["model"]["mixture_heads"] == 4 and row["model"]["hidden_features"] == [16]
    lines = (tmp_path / row["curve"]).read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,val_loss") and len(lines) == 4

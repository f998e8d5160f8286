"""The service-latency benchmark runs end to end in its smoke mode."""

from __future__ import annotations

import json
from pathlib import Path

from bench.service_latency import main


def test_service_latency_smoke(tmp_path: Path) -> None:
    main(["--smoke", "--out", str(tmp_path)])
    rows = [
        json.loads(line) for line in (tmp_path / "service_latency.jsonl").read_text().splitlines()
    ]
    modes = {(r["mode"], r["draws"], r["concurrency"], r["format"]) for r in rows}
    assert ("in-process", 100, 1, "-") in modes and ("http", 100, 4, "npy") in modes
    assert len(rows) == 2 * (1 + 2 * 2)
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_s"] > 0
        assert row["device"] and row["versions"]["sbiserve"]
    assert "| draws | mode |" in (tmp_path / "service_latency.md").read_text()

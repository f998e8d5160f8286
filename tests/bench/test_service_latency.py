"""The service-latency benchmark runs end to end in its smoke mode: the server and the
load generator in processes of their own, CPU time and batching recorded."""

from __future__ import annotations

import json
from pathlib import Path

from bench.service_latency import main


def test_service_latency_smoke(tmp_path: Path) -> None:
    arguments = ["--smoke", "--out", str(tmp_path), "--label", "smoke", "--timelines"]
    main([*arguments, "--hidden-features", "32,32"])
    lines = (tmp_path / "service_latency-smoke.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    modes = {(r["mode"], r["draws"], r["concurrency"], r["format"]) for r in rows}
    assert ("in-process", 100, 1, "-") in modes and ("http", 100, 4, "npy") in modes
    assert len(rows) == 2 * (1 + 2 + 2 * 2)  # in-process, paired and HTTP, per draw count
    for row in (r for r in rows if r["mode"] == "paired"):
        # One in-process call and one HTTP request alternated: both medians and the
        # median of the pairs' ratios.
        assert row["failed"] == 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["in_process_p50_ms"] > 0 and row["ratio_p50"] > 0
    for row in (r for r in rows if r["mode"] != "paired"):
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["requests_per_s"] > 0
        assert row["failed"] == 0 and row["device"] and row["versions"]["sbiserve"]
        assert row["model_hidden_features"] == [32, 32]  # the network named was served
    for row in (r for r in rows if r["mode"] == "http"):
        assert row["client_cpu_ms_per_request"] > 0 and row["server_cpu_ms_per_request"] > 0
        assert row["batches"] > 0 and row["requests_per_batch"] >= 1
        assert row["p99_ms"] <= row["max_ms"]
        # The timeline: one send time and one latency per measured request, in order.
        name = f"service_latency-smoke-timeline-d{row['draws']}-c{row['concurrency']}"
        timeline = json.loads((tmp_path / f"{name}-{row['format']}.json").read_text())
        assert len(timeline["starts"]) == len(timeline["latencies"]) >= 20
        assert max(timeline["latencies"]) * 1000 == row["max_ms"]
        assert all(0 <= s < 60 for s in timeline["starts"])
    assert "| draws | mode |" in (tmp_path / "service_latency-smoke.md").read_text()

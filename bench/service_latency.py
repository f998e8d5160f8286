"""Latency and throughput of ``POST /v1/posterior/sample`` as deployed, beside in-process
sampling of the same model.

One run starts ``sbiserve serve`` in its own process (its private Redis and one worker
are its children; one torch thread), trains one energy flow (the service's default
network for 2,000 two-moons simulations unless ``--hidden-features`` names one; quality is
irrelevant here), then for each number of draws and of concurrent clients sends requests
from a separate load-generator process (:mod:`bench.http_load`: raw keep-alive
connections, a cost per request that does not grow with them) and records p50/p99
latency, requests/s, failures, the client's and the server's CPU time per request (the
server: ``serve``, its worker and its Redis) and the requests per forward pass the
worker reported in ``/metrics``. The same model loaded in this process in its serving
form (:func:`sbiserve.models.prepare_for_serving`, under ``inference_mode``) gives the
in-process reference. One client's rounds are also run *paired* (``mode="paired"``):
this process alternates one in-process call and one HTTP request (raw keep-alive, the
body read but not parsed, as the load generator does), so both see the same moments of
the machine; its row holds both medians and the median of the per-pair ratios, which
a slow or fast stretch of the machine moves much less than two rounds run apart.

    python -m bench.service_latency --label after
    python -m bench.service_latency --draws 1 --clients 64 --formats json --out /tmp/x
    python -m bench.service_latency --server-pythonpath /tmp/old/site --label before
    python -m bench.service_latency --hidden-features 128,128,128 --label after-128
    python -m bench.service_latency --smoke --out /tmp/latency   # seconds

Rows go to ``<out>/service_latency-<label>.jsonl`` and a table to ``...md``. Grid points
with more than ``--max-concurrent-draws`` draws in flight (e.g. 64 clients x 10,000) are
left out. Every row records the served network's hidden layers
(``model_hidden_features``): the 10,000-draw rows are its matrix multiplies, so runs
whose defaults differ compare only with the same network named.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import psutil
import torch

from sbiserve.models import load_estimator, prepare_for_serving, tune_malloc
from sbiserve.service.embedded_redis import free_port
from sbiserve.service.simulators import two_moons_prior, two_moons_simulator

from .provenance import environment

REPO = Path(__file__).resolve().parent.parent
# Longer than the service default (30 s), so slow rounds count as slow, not as failed.
SAMPLE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LatencySettings:
    draws: tuple[int, ...]
    concurrency: tuple[int, ...]
    requests: int
    formats: tuple[str, ...]
    out: Path
    max_epochs: int
    label: str = "after"
    server_pythonpath: str | None = None
    max_concurrent_draws: int = 100_000
    hidden_features: tuple[int, ...] | None = None
    timelines: bool = False


class Server:
    """``sbiserve serve`` in a process of its own, on a free port, with a fresh data dir."""

    def __init__(self, data_dir: Path, pythonpath: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env.update(
            OMP_NUM_THREADS="1",
            SBISERVE_TORCH_THREADS="1",
            SBISERVE_DEVICE="cpu",
            SBISERVE_SAMPLE_TIMEOUT_S=str(SAMPLE_TIMEOUT_S),
        )
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, "-m", "sbiserve.service.cli", "serve"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.data_dir / "serve.log", "wb") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited; see {self.data_dir / 'serve.log'}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("serve did not become ready within 180 s")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def cpu_s(self) -> float:
        """CPU seconds used so far by ``serve`` and its children (worker, Redis)."""
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def batch_counts(self) -> tuple[float, float]:
        """(forward passes, requests served) from ``/metrics``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("sbiserve_sample_batches_total", "sbiserve_sample_requests_total"):
                values[name] = float(value)
        batches = values.get("sbiserve_sample_batches_total", 0.0)
        return batches, values.get("sbiserve_sample_requests_total", 0.0)


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds (NaN when nothing succeeded)."""
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    values = np.asarray(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def http_round(
    server: Server, model_id: str, draws: int, concurrency: int, requests: int, fmt: str
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """``requests`` sampling calls from ``concurrency`` connections of a separate process:
    the round's figures, and its timeline (each request's send time and latency, s)."""
    batches0, served0 = server.batch_counts()
    cpu0 = server.cpu_s()
    command = [sys.executable, "-m", "bench.http_load", "--url", server.url, "--model", model_id]
    command += ["--draws", str(draws), "--connections", str(concurrency)]
    command += ["--requests", str(requests), "--format", fmt]
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=True)
    server_cpu = server.cpu_s() - cpu0
    batches1, served1 = server.batch_counts()
    load = json.loads(done.stdout)
    sent = requests + load["warm_requests"]
    figures = {
        **percentiles(load["latencies"]),
        "max_ms": 1000 * max(load["latencies"], default=float("nan")),
        "requests_per_s": sent / load["wall_s"],
        "draws_per_s": sent * draws / load["wall_s"],
        "failed": len(load["failures"]),
        "failed_statuses": sorted(set(load["failures"])),
        "client_cpu_ms_per_request": 1000 * load["client_cpu_s"] / sent,
        "server_cpu_ms_per_request": 1000 * server_cpu / sent,
        "requests_per_batch": (served1 - served0) / max(batches1 - batches0, 1),
        "batches": batches1 - batches0,
    }
    return figures, {"starts": load["starts"], "latencies": load["latencies"]}


def in_process_round(estimator: Any, draws: int, requests: int) -> dict[str, Any]:
    """The same sampling, called directly on the model in its serving form."""
    x = torch.tensor([0.0, 0.1])
    latencies = []
    with torch.inference_mode():
        estimator.sample((draws,), x)
        start_all = time.perf_counter()
        for i in range(requests):
            start = time.perf_counter()
            estimator.sample((draws,), x, generator=torch.Generator().manual_seed(i))
            latencies.append(time.perf_counter() - start)
        wall = time.perf_counter() - start_all
    return {
        **percentiles(latencies),
        "requests_per_s": requests / wall,
        "draws_per_s": requests * draws / wall,
        "failed": 0,
    }


def paired_round(
    server: Server, estimator: Any, model_id: str, draws: int, requests: int, fmt: str
) -> dict[str, Any]:
    """Alternates one in-process call and one HTTP request ``requests`` times.

    The HTTP request is the load generator's (same body, ``Accept`` and reading of the
    whole answer, unparsed) over one keep-alive connection from this process.
    """
    x = torch.tensor([0.0, 0.1])
    accept = "application/x-npy" if fmt == "npy" else "application/json"
    headers = {"Content-Type": "application/json", "Accept": accept}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=SAMPLE_TIMEOUT_S)
    in_process, over_http, failed = [], [], 0
    try:
        for i in range(requests + 2):  # two unrecorded pairs first
            body = json.dumps({"model": model_id, "x": [0.0, 0.1], "num_samples": draws, "seed": i})
            start = time.perf_counter()
            with torch.inference_mode():
                estimator.sample((draws,), x, generator=torch.Generator().manual_seed(i))
            middle = time.perf_counter()
            connection.request("POST", "/v1/posterior/sample", body, headers)
            response = connection.getresponse()
            response.read()
            end = time.perf_counter()
            if i < 2:
                continue
            if response.status != 200:
                failed += 1
                continue
            in_process.append(middle - start)
            over_http.append(end - middle)
    finally:
        connection.close()
    ratios = [h / p for h, p in zip(over_http, in_process, strict=True)]
    return {
        **percentiles(over_http),
        "in_process_p50_ms": percentiles(in_process)["p50_ms"],
        "ratio_p50": float(np.median(ratios)) if ratios else float("nan"),
        "failed": failed,
    }


def train_model(url: str, max_epochs: int, hidden_features: tuple[int, ...] | None = None) -> str:
    """Uploads two-moons simulations and trains an energy flow; returns the model id.

    ``hidden_features`` names the network; ``None`` leaves the service's default.
    """
    rng = np.random.default_rng(0)
    theta = two_moons_prior(2000, rng)
    x = two_moons_simulator(theta, rng)
    with httpx.Client(base_url=url, timeout=600) as client:
        dataset = client.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()})
        hyperparameters: dict[str, Any] = {"max_epochs": max_epochs}
        if hidden_features is not None:
            hyperparameters["hidden_features"] = list(hidden_features)
        body = {
            "dataset_id": dataset.json()["dataset_id"],
            "hyperparameters": hyperparameters,
            "prior": {"low": [-1, -1], "high": [1, 1]},
        }
        job_id = client.post("/v1/jobs", json=body).json()["job_id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
    if job["status"] != "succeeded":
        raise RuntimeError(f"training failed: {job}")
    return str(job["model_id"])


def run(settings: LatencySettings) -> list[dict[str, Any]]:
    """Runs every configuration; writes JSON lines and a markdown table to ``out``."""
    settings.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # as the worker
    # The worker fixes glibc's malloc thresholds (Settings.tune_malloc): so does the
    # in-process reference, or the ratio would compare two allocators.
    env_malloc = tune_malloc()
    rows: list[dict[str, Any]] = []
    env = {
        **environment(torch.device("cpu")),
        "label": settings.label,
        # The server's code: this checkout, or the one --server-pythonpath names.
        "server_code": settings.server_pythonpath or "this checkout",
        "in_process_malloc_tuned": env_malloc,
    }
    with (
        tempfile.TemporaryDirectory() as data_dir,
        Server(Path(data_dir), settings.server_pythonpath) as server,
    ):
        model_id = train_model(server.url, settings.max_epochs, settings.hidden_features)
        estimator = prepare_for_serving(load_estimator(Path(data_dir) / "models" / model_id))
        env["model_hidden_features"] = list(estimator.config.hidden_features)
        for draws in settings.draws:
            base = {**env, "draws": draws, "device": "cpu", "load_before": os.getloadavg()[0]}
            rows.append(
                {
                    **base,
                    "mode": "in-process",
                    "concurrency": 1,
                    "format": "-",
                    **in_process_round(estimator, draws, settings.requests),
                }
            )
            for fmt in settings.formats:
                result = paired_round(server, estimator, model_id, draws, settings.requests, fmt)
                rows.append({**base, "mode": "paired", "concurrency": 1, "format": fmt, **result})
                print(f"draws={draws} paired {fmt}: {result}", flush=True)
            for concurrency in settings.concurrency:
                if draws * concurrency > settings.max_concurrent_draws and concurrency > 1:
                    continue
                requests = max(settings.requests, 20 * concurrency)
                for fmt in settings.formats:
                    result, timeline = http_round(
                        server, model_id, draws, concurrency, requests, fmt
                    )
                    row = {**base, "mode": "http", "concurrency": concurrency, "format": fmt}
                    if settings.timelines:
                        path = settings.out / (
                            f"service_latency-{settings.label}-timeline-"
                            f"d{draws}-c{concurrency}-{fmt}.json"
                        )
                        path.write_text(json.dumps(timeline))
                    rows.append({**row, **result})
                    print(f"draws={draws} c={concurrency} {fmt}: {result}", flush=True)
    name = f"service_latency-{settings.label}"
    with open(settings.out / f"{name}.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (settings.out / f"{name}.md").write_text("\n".join(table(rows)) + "\n")
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of the rows (a paired row's ratio is the median of its pairs')."""
    lines = [
        "| draws | mode | clients | format | p50 ms | p99 ms | requests/s | failed "
        "| requests/batch | client CPU ms/req | server CPU ms/req |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = f"| {r['draws']:,} | {r['mode']} | {r['concurrency']} | {r['format']} | "
        if r["mode"] == "paired":
            lines.append(
                head + f"{r['p50_ms']:.1f} (in-process {r['in_process_p50_ms']:.1f}; "
                f"{r['ratio_p50']:.2f}x) | {r['p99_ms']:.1f} | - | {r['failed']} | - | - | - |"
            )
            continue
        http = r["mode"] == "http"
        lines.append(
            head + f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests_per_s']:.0f} | "
            f"{r['failed']} | "
            + (
                f"{r['requests_per_batch']:.1f} | {r['client_cpu_ms_per_request']:.2f} | "
                f"{r['server_cpu_ms_per_request']:.2f} |"
                if http
                else "- | - | - |"
            )
        )
    return lines


def parse_args(argv: list[str] | None = None) -> LatencySettings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench/serving"))
    parser.add_argument("--label", default="after", help="names the output files")
    parser.add_argument("--requests", type=int, default=200, help="requests per configuration")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--draws", type=_ints, default=(1, 10_000), help="e.g. 1,100")
    parser.add_argument("--clients", type=_ints, default=(1, 64), help="concurrent clients")
    parser.add_argument("--formats", type=_names, default=("json", "npy"), help="json,npy")
    parser.add_argument("--max-concurrent-draws", type=int, default=100_000)
    parser.add_argument(
        "--server-pythonpath",
        help="PYTHONPATH for the server only: measure another checkout (e.g. the code "
        "before a change) with the same load generator",
    )
    parser.add_argument(
        "--hidden-features",
        type=_ints,
        help="the served network's hidden layers, e.g. 128,128,128 (default: the service's)",
    )
    parser.add_argument(
        "--timelines",
        action="store_true",
        help="also write each HTTP round's timeline (send time and latency of every "
        "request) as LABEL-timeline-dDRAWS-cCLIENTS-FORMAT.json",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
    args = parser.parse_args(argv)
    unknown = set(args.formats) - {"json", "npy"}
    if unknown:
        parser.error(f"unknown format(s) {sorted(unknown)}; use json and/or npy")
    if args.smoke:
        return LatencySettings(
            (1, 100),
            (1, 4),
            8,
            ("json", "npy"),
            args.out,
            1,
            args.label,
            hidden_features=args.hidden_features,
            timelines=args.timelines,
        )
    return LatencySettings(
        tuple(args.draws),
        tuple(args.clients),
        args.requests,
        tuple(args.formats),
        args.out,
        args.max_epochs,
        args.label,
        args.server_pythonpath,
        args.max_concurrent_draws,
        args.hidden_features,
        args.timelines,
    )


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()

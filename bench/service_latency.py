"""Latency and throughput of ``POST /v1/posterior/sample``, beside in-process sampling.

One run: start a private service on this machine (its own Redis, one worker, the API on
loopback), train one energy flow (default network; quality is irrelevant here), then for
each number of draws (1, 100, 10,000) and each number of concurrent clients (1, 64):
send requests with bounded concurrency and record p50/p99 latency and requests/s, for
JSON and for ``.npy`` answers. The same model loaded in this process and sampled with
``estimator.sample`` gives the in-process reference.

    python -m bench.service_latency --out docs/bench
    python -m bench.service_latency --draws 10000 --clients 64 --formats npy --out /tmp/big
    python -m bench.service_latency --smoke --out /tmp/latency   # seconds

The worker's settings come from the environment as usual (``SBISERVE_SAMPLE_MAX_DRAWS``
...), and each row records ``sample_max_draws``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from sbiserve.models import load_estimator
from sbiserve.service.settings import Settings
from sbiserve.service.simulators import two_moons_prior, two_moons_simulator
from sbiserve.service.stack import LocalStack

from .provenance import environment

# Longer than the service default (30 s): 64 clients asking 10,000 draws each is ~640k
# draws in one batch, which a CPU worker needs longer for. Failures are counted, not hidden.
SAMPLE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LatencySettings:
    draws: tuple[int, ...]
    concurrency: tuple[int, ...]
    requests: int
    formats: tuple[str, ...]
    out: Path
    max_epochs: int


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds."""
    values = np.asarray(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


async def http_round(
    url: str, model_id: str, draws: int, concurrency: int, requests: int, fmt: str
) -> dict[str, Any]:
    """``requests`` sampling calls, at most ``concurrency`` in flight."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Accept": "application/x-npy"} if fmt == "npy" else {}
    latencies: list[float] = []
    failures: list[int] = []
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one(i: int) -> None:
            body = {"model": model_id, "x": [0.0, 0.1 * (i % 7)], "num_samples": draws, "seed": i}
            async with semaphore:
                start = time.perf_counter()
                response = await client.post("/v1/posterior/sample", json=body, headers=headers)
                elapsed = time.perf_counter() - start
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                failures.append(response.status_code)

        await asyncio.gather(*(one(i) for i in range(min(concurrency, 4))))  # warm-up
        latencies.clear()
        failures.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(requests)))
        wall = time.perf_counter() - start
    return {
        **percentiles(latencies),
        "requests_per_s": requests / wall,
        "draws_per_s": requests * draws / wall,
    }


def in_process_round(estimator: Any, draws: int, requests: int) -> dict[str, Any]:
    """The same sampling, called directly on the loaded estimator."""
    x = torch.tensor([0.0, 0.1])
    latencies = []
    with torch.no_grad():
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
    }


def train_model(url: str, max_epochs: int) -> str:
    """Uploads two-moons simulations and trains an energy flow; returns the model id."""
    rng = np.random.default_rng(0)
    theta = two_moons_prior(2000, rng)
    x = two_moons_simulator(theta, rng)
    with httpx.Client(base_url=url, timeout=600) as client:
        dataset = client.post("/v1/datasets", json={"theta": theta.tolist(), "x": x.tolist()})
        body = {
            "dataset_id": dataset.json()["dataset_id"],
            "hyperparameters": {"max_epochs": max_epochs},
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
    rows: list[dict[str, Any]] = []
    env = environment(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as data_dir:
        service = Settings(
            redis_url=None,
            data_dir=Path(data_dir),
            port=0,
            sample_wait_ms=2,
            sample_timeout_s=SAMPLE_TIMEOUT_S,
        )
        with LocalStack(service) as stack:
            model_id = train_model(stack.url, settings.max_epochs)
            estimator = load_estimator(Path(data_dir) / "models" / model_id)
            worker_device = httpx.get(f"{stack.url}/v1/models/{model_id}").json()["training"][
                "device"
            ]
            for draws in settings.draws:
                base = {
                    **env,
                    "draws": draws,
                    "device": worker_device,
                    "sample_max_draws": service.sample_max_draws,
                }
                rows.append(
                    {
                        **base,
                        "mode": "in-process",
                        "concurrency": 1,
                        "format": "-",
                        **in_process_round(estimator, draws, settings.requests),
                    }
                )
                for concurrency in settings.concurrency:
                    for fmt in settings.formats:
                        requests = max(settings.requests, concurrency)
                        result = asyncio.run(
                            http_round(stack.url, model_id, draws, concurrency, requests, fmt)
                        )
                        rows.append(
                            {
                                **base,
                                "mode": "http",
                                "concurrency": concurrency,
                                "format": fmt,
                                **result,
                            }
                        )
                        print(f"draws={draws} c={concurrency} {fmt}: {result}", flush=True)
    with open(settings.out / "service_latency.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (settings.out / "service_latency.md").write_text("\n".join(table(rows)) + "\n")
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of the rows."""
    lines = [
        "| draws | mode | clients | format | p50 ms | p99 ms | requests/s | draws/s | failed |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['draws']:,} | {r['mode']} | {r['concurrency']} | {r['format']} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests_per_s']:.0f} | "
            f"{r['draws_per_s']:,.0f} | {len(r.get('failed', []))} |"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> LatencySettings:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--requests", type=int, default=200, help="requests per configuration")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--draws", type=_ints, default=(1, 100, 10_000), help="e.g. 1,100")
    parser.add_argument("--clients", type=_ints, default=(1, 64), help="concurrent clients")
    parser.add_argument("--formats", type=_names, default=("json", "npy"), help="json,npy")
    parser.add_argument("--smoke", action="store_true", help="tiny run, for the tests")
    args = parser.parse_args(argv)
    if args.smoke:
        return LatencySettings((1, 100), (1, 4), 8, ("json", "npy"), args.out, 1)
    unknown = set(args.formats) - {"json", "npy"}
    if unknown:
        parser.error(f"unknown format(s) {sorted(unknown)}; use json and/or npy")
    return LatencySettings(
        tuple(args.draws),
        tuple(args.clients),
        args.requests,
        tuple(args.formats),
        args.out,
        args.max_epochs,
    )


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()

"""Sampling speed: posterior draws per second of every method, as the problem grows.

Each call draws ``--draws-per-call`` parameters in all, split evenly over ``B``
observations passed at once (``B = 1`` is one observation; ``B = 1000`` is a batch, as a
server batches requests). Networks are freshly initialized, not trained: a draw costs the
same either way for every family here, and it keeps the run short. ``x`` has as many
features as ``theta``. The sbi baselines sample through ``DirectPosterior.sample_batched``
with a standard normal prior, so nothing is rejected and only the network is timed.
Methods are interleaved within each setting so that a change in machine load hits all
of them alike. Results replace ``OUT/speed.jsonl`` (ratios are only meaningful within
one run), then ``OUT/speed.md`` and ``OUT/speed.png`` are written.

Example:
    python -m bench.speed --dims 2,10,50 --batches 1,100 --out docs/bench
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import baselines, plots, provenance, records, speed_report
from bench.methods import base_name, check_methods, default_methods
from bench.trained import Sampler
from sbiserve.models import build_estimator, resolve_device

RESULTS_FILE = "speed.jsonl"


def untrained_sampler(method: str, theta_dim: int, device: torch.device) -> Sampler:
    """A freshly initialized sampler of ``method`` with ``x_dim = theta_dim``."""
    name = base_name(method)
    if name in baselines.BASELINES:
        return baselines.untrained_sampler(name, theta_dim, theta_dim, device)
    estimator = build_estimator(name, theta_dim, theta_dim).to(device).eval()

    @torch.no_grad()
    def sample(num: int, x: torch.Tensor) -> torch.Tensor:
        return estimator.sample((num,), x=x.to(device)).cpu()

    return sample


def time_call(sample: Sampler, num: int, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``repeats`` calls, after one warm-up call."""
    sample(num, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sample(num, x)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measures every (dimension, batch, method) cell that fits each method's time budget."""
    device = resolve_device("auto")
    environment = provenance.environment(device)
    spent = dict.fromkeys(args.methods, 0.0)
    rows: list[dict[str, Any]] = []
    torch.manual_seed(0)
    for dim in args.dims:
        samplers: dict[str, Sampler] = {}
        for batch in args.batches:
            x = torch.randn(batch, dim)
            per_observation = max(1, args.draws_per_call // batch)
            for method in args.methods:
                if spent[method] > args.method_seconds:
                    continue
                start = time.perf_counter()
                if method not in samplers:
                    samplers[method] = untrained_sampler(method, dim, device)
                seconds = time_call(samplers[method], per_observation, x, args.repeats)
                spent[method] += time.perf_counter() - start
                draws = per_observation * batch
                rows.append(
                    {
                        "method": method,
                        "theta_dim": dim,
                        "x_dim": dim,
                        "num_observations": batch,
                        "draws_per_observation": per_observation,
                        "draws_per_call": draws,
                        "seconds": seconds,
                        "draws_per_second": draws / seconds,
                        "repeats": args.repeats,
                        "untrained": True,
                        "smoke": args.smoke,
                        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
                        **environment,
                    }
                )
                print(
                    f"D={dim} B={batch} {method}: {draws / seconds:,.0f} draws/s",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Reads the command line; ``--smoke`` shrinks every default."""
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__)
    parser.add_argument("--dims", type=_ints, help="theta dimensions, default 2,5,10,20,50")
    parser.add_argument(
        "--batches", type=_ints, help="observations per call, default 1,10,100,1000"
    )
    parser.add_argument("--draws-per-call", type=int, help="draws per call in all (10000)")
    parser.add_argument("--repeats", type=int, help="timed calls per cell (median; default 3)")
    parser.add_argument("--methods", type=lambda t: [m for m in t.split(",") if m])
    parser.add_argument(
        "--method-seconds",
        type=float,
        default=300.0,
        help="a method whose cells have taken this long in all skips its remaining cells",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests (seconds)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report only")
    args = parser.parse_args(argv)
    args.dims = args.dims or ([2, 3] if args.smoke else [2, 5, 10, 20, 50])
    args.batches = args.batches or ([1, 10] if args.smoke else [1, 10, 100, 1000])
    args.draws_per_call = args.draws_per_call or (200 if args.smoke else 10_000)
    args.repeats = args.repeats or (1 if args.smoke else 3)
    args.methods = args.methods or default_methods()
    check_methods(args.methods)
    return args


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    args = parse_args(argv)
    results = args.out / RESULTS_FILE
    if args.report_only:
        rows = records.read_rows(results)
    else:
        rows = run(args)
        args.out.mkdir(parents=True, exist_ok=True)
        results.unlink(missing_ok=True)
        for row in rows:
            records.append_row(results, row)
    speed_report.write(rows, args.out)
    plots.speed(rows, args.out / speed_report.PLOT)


if __name__ == "__main__":
    main()

"""The demo's training run, in-process: how good a two-moons posterior a schedule gives.

``sbiserve demo`` trains an energy flow on 5,000 simulations of the built-in two-moons
simulator and plots its draws for ``x_o = (0, 0)``. This tool trains the same estimator
on the same kind of data without the service (one torch thread), draws 10,000 samples at
three observations and scores them with the fast C2ST against the analytic two-moons
posterior. It chose the demo's schedule (``docs/BENCHMARKS.md``, section 2.4); one row per
run is appended to ``OUT/demo_schedule.jsonl`` and the ``(0, 0)`` draws are plotted to
``OUT/demo_TAG.png``.

Example:
    python -m bench.demo_schedule cos60lr3 \\
        --options '{"max_epochs": 60, "lr_schedule": "cosine", "learning_rate": 0.003}'
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench import provenance, records
from bench.c2st import fast_c2st
from sbiserve.models import BoxPrior, build_estimator, fit, split_options
from sbiserve.service.plots import plot_posterior
from sbiserve.service.simulators import TWO_MOONS_HIGH, TWO_MOONS_LOW, two_moons_simulator

OUT = Path("docs/bench/demo")
RESULTS_FILE = "demo_schedule.jsonl"
OBSERVATIONS = ((0.0, 0.0), (0.0, 0.3), (-0.3, 0.1))


def reference_posterior(num: int, x_o: tuple[float, float], seed: int = 1) -> torch.Tensor:
    """Exact two-moons posterior draws ``(num, 2)`` for ``x_o`` under the uniform prior.

    The simulator adds a crescent point ``p`` (angle and radius noise) to a shift that is
    linear in ``theta`` up to the sign of ``theta_1 + theta_2``; inverting the shift for a
    drawn ``p`` and a fair sign gives the posterior (both branches have the same
    Jacobian), truncated to the prior box by rejection. sbibm's reference sampler for
    this task works the same way and accepts any observation, but draws one sample per
    simulator call and checks each against all kept ones (quadratic in the draws, minutes
    for 10,000); this is the same construction on whole arrays.
    """
    rng = np.random.default_rng(seed)
    low, high = TWO_MOONS_LOW[0], TWO_MOONS_HIGH[0]
    kept: list[np.ndarray] = []
    while sum(len(k) for k in kept) < num:
        angle = rng.uniform(-math.pi / 2, math.pi / 2, 2 * num)
        radius = rng.normal(0.1, 0.01, 2 * num)
        sum_abs = -math.sqrt(2) * (x_o[0] - (radius * np.cos(angle) + 0.25))
        diff = math.sqrt(2) * (x_o[1] - radius * np.sin(angle))
        signed = rng.choice([-1.0, 1.0], 2 * num) * sum_abs
        theta = np.stack([(signed - diff) / 2, (signed + diff) / 2], axis=-1)
        ok = (sum_abs >= 0) & np.all((theta >= low) & (theta <= high), axis=-1)
        kept.append(theta[ok])
    return torch.as_tensor(np.concatenate(kept)[:num], dtype=torch.float32)


def run(tag: str, options: dict[str, Any], num_simulations: int, out: Path) -> dict[str, Any]:
    """Trains on ``num_simulations`` demo simulations with ``options``; returns the row."""
    rng = np.random.default_rng(0)
    theta_np = rng.uniform(TWO_MOONS_LOW[0], TWO_MOONS_HIGH[0], size=(num_simulations, 2))
    x_np = two_moons_simulator(theta_np, rng)
    theta = torch.as_tensor(theta_np, dtype=torch.float32)
    x = torch.as_tensor(x_np, dtype=torch.float32)
    box = BoxPrior(torch.tensor(TWO_MOONS_LOW), torch.tensor(TWO_MOONS_HIGH))
    options = {"seed": 0, "device": "cpu", **options}
    model_config, train_config = split_options("energy_flow", options, num_simulations, 2)
    torch.manual_seed(train_config.seed)
    estimator = build_estimator("energy_flow", 2, 2, model_config, box)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fit(estimator, theta, x, train_config)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    scores: dict[str, float] = {}
    for x_o in OBSERVATIONS:
        with torch.no_grad():
            draws = estimator.sample((10_000,), x=torch.tensor(x_o)).reshape(10_000, 2)
        scores[str(x_o)] = fast_c2st(reference_posterior(10_000, x_o), draws)
        if x_o == OBSERVATIONS[0]:
            out.mkdir(parents=True, exist_ok=True)
            title = f"{tag}: C2ST {scores[str(x_o)]:.3f} at x_o = {x_o}"
            plot_posterior(draws.numpy(), str(out / f"demo_{tag}.png"), title, (-1.0, 1.0))
    return {
        "tag": tag,
        "options": options,
        "num_simulations": num_simulations,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "kept_epoch": result.kept_epoch,
        "train_seconds": wall,
        "train_cpu_seconds": cpu,
        "c2st": scores,
        "c2st_mean": sum(scores.values()) / len(scores),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **provenance.environment(torch.device("cpu")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.demo_schedule", description=__doc__)
    parser.add_argument("tag", help="name of this run")
    parser.add_argument("--options", type=json.loads, default={}, help="energy-flow options")
    parser.add_argument("--num-simulations", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the figures are for one thread, as in bench.quality
    row = run(args.tag, args.options, args.num_simulations, args.out)
    records.append_row(args.out / RESULTS_FILE, row)
    print(json.dumps({k: row[k] for k in ("tag", "epochs", "train_cpu_seconds", "c2st")}))


if __name__ == "__main__":
    main()

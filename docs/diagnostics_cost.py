"""What the worker's diagnostics cost next to training (the figures in ``DIAGNOSTICS.md``).

Trains as a worker would (``fit`` with the given options), then runs
:func:`sbiserve.models.diagnostics.diagnose` on the held-out split with the given budget,
and prints one JSON line per case: training and diagnostics wall-clock seconds.

    OMP_NUM_THREADS=1 python docs/diagnostics_cost.py two_moons 1000 energy_flow
    OMP_NUM_THREADS=1 python docs/diagnostics_cost.py gaussian_linear_10 1000 npe \
        --pairs 200 --draws 256 --options '{"max_epochs": 100}'
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import numpy as np
import torch

from sbiserve.models import BoxPrior, build_estimator, fit, split_options
from sbiserve.models.diagnostics import DiagnosticsConfig, diagnose, held_out_indices
from sbiserve.service.simulators import two_moons_prior, two_moons_simulator


def simulate(task: str, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(theta, x, prior box or None)`` for one of the tasks."""
    if task == "two_moons":
        theta = two_moons_prior(num, rng)
        return theta, two_moons_simulator(theta, rng), ((-1, -1), (1, 1))
    if task == "linear_gaussian":
        a = np.array([[1.0, 0.5], [-0.3, 1.0], [0.8, -0.6]])
        theta = rng.normal(size=(num, 2))
        return theta, theta @ a.T + 0.5 * rng.normal(size=(num, 3)), None
    if task == "gaussian_linear_10":
        theta = rng.uniform(-1, 1, size=(num, 10))
        return theta, theta + 0.1 * rng.normal(size=(num, 10)), ((-1,) * 10, (1,) * 10)
    raise SystemExit(f"unknown task {task!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["two_moons", "linear_gaussian", "gaussian_linear_10"])
    parser.add_argument("num_simulations", type=int)
    parser.add_argument("family", default="energy_flow", nargs="?")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--draws", type=int, default=256)
    parser.add_argument("--options", default="{}", help="hyperparameters as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    theta, x, box = simulate(args.task, args.num_simulations, rng)
    options = {**json.loads(args.options), "device": "cpu"}
    # Sized by the simulations and parameters, as the worker sizes a job.
    model_config, train_config = split_options(args.family, options, *theta.shape)
    prior = BoxPrior(low=box[0], high=box[1]) if box else None
    estimator = build_estimator(args.family, theta.shape[1], x.shape[1], model_config, prior)
    theta_t, x_t = (
        torch.as_tensor(theta, dtype=torch.float32),
        torch.as_tensor(x, dtype=torch.float32),
    )
    start = time.perf_counter()
    result = fit(estimator, theta_t, x_t, train_config)
    train_s = time.perf_counter() - start
    rows = held_out_indices(theta.shape[0], train_config)
    config = DiagnosticsConfig(num_pairs=args.pairs, num_draws=args.draws, seed=0)
    start = time.perf_counter()
    report = diagnose(estimator, theta_t[rows], x_t[rows], config)
    diag_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "task": args.task,
                "num_simulations": args.num_simulations,
                "family": args.family,
                "options": json.loads(args.options),
                "epochs": result.epochs,
                "train_s": round(train_s, 2),
                "pairs": report.num_pairs,
                "draws": report.num_draws,
                "diagnostics_s": round(diag_s, 3),
                "share_of_training": round(diag_s / train_s, 4),
                "verdict": report.verdict,
                "cpu": platform.processor() or platform.machine(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

"""Diagnostic (docs/BENCHMARKS.md, section 2.20): slcp with summary features of ``x`` appended.

Does the energy flow miss slcp's scale parameters because it cannot learn the spread of
the four 2-D points in ``x`` from the simulations, or because of its loss? Append the
features a statistician would compute and train the default configuration on them:

    python docs/bench/feature_learning/oracle_features.py spread 1000 0
    python docs/bench/feature_learning/oracle_features.py spread 1000 0 npe_nsf

Modes: ``none`` (``x`` as the benchmark gives it), ``spread`` (plus the log standard
deviation of the points per coordinate), ``all`` (plus their correlation and mean).
Prints one JSON row: per-observation fast C2ST (observations 1-5, 10,000 draws), CPU
seconds of training, epochs. Not a method: it uses what slcp's simulator is.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from bench import baselines, tasks
from bench.c2st import fast_c2st
from sbiserve.models import build_estimator, fit, prepare_for_serving, split_options


def augment(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` ``(N, 8)`` (four 2-D points) with the mode's features appended."""
    if mode == "none":
        return x
    points = x.reshape(-1, 4, 2)
    centred = points - points.mean(dim=1, keepdim=True)
    variance = (centred**2).mean(dim=1)  # (N, 2)
    features = [variance.clamp_min(1e-12).log() / 2]
    if mode == "all":
        covariance = (centred[..., 0] * centred[..., 1]).mean(dim=1, keepdim=True)
        scale = variance.prod(dim=1, keepdim=True).clamp_min(1e-12).sqrt()
        features += [covariance / scale, points.mean(dim=1)]
    return torch.cat([x, *features], dim=1)


def main(mode: str, budget: int, seed: int, method: str) -> dict[str, object]:
    torch.set_num_threads(1)
    task = tasks.load_task("slcp")
    theta, x = tasks.cached_simulation("slcp", budget, 0)
    x = augment(x, mode)
    if method == "npe_nsf":  # sbi's NPE-NSF through the benchmark's own baseline
        torch.manual_seed(seed)
        prior = tasks.prior_distribution(task)
        trained = baselines.train_baseline(
            "npe_nsf", theta, x, prior, {}, None, torch.device("cpu")
        )
        sample, cpu, epochs = trained.sample, trained.train_cpu_seconds, trained.epochs
    else:
        sample, cpu, epochs = train_energy_flow(theta, x, task, seed)
    scores = []
    for index in range(1, 6):
        x_o = augment(tasks.observation(task, index)[None], mode)[0]
        with torch.no_grad():
            draws = sample(10_000, x_o)
        scores.append(fast_c2st(tasks.reference_draws(task, index, 10_000), draws))
    return {
        "mode": mode,
        "budget": budget,
        "seed": seed,
        "family": method,
        "c2st": scores,
        "mean": sum(scores) / len(scores),
        "cpu": cpu,
        "epochs": epochs,
    }


def train_energy_flow(
    theta: torch.Tensor, x: torch.Tensor, task: Any, seed: int
) -> tuple[Callable[[int, torch.Tensor], torch.Tensor], float, int]:
    """The default energy flow as a quality cell trains it: (sampler, CPU s, epochs)."""
    model_config, train_config = split_options(
        "energy_flow", {"seed": seed}, theta.shape[0], theta.shape[1]
    )
    torch.manual_seed(seed)
    start = time.process_time()
    estimator = build_estimator(
        "energy_flow", theta.shape[1], x.shape[1], model_config, tasks.box_prior(task), seed=seed
    )
    result = fit(estimator, theta, x, train_config)
    cpu = time.process_time() - start
    served = prepare_for_serving(estimator)
    return (lambda num, x_o: served.sample((num,), x=x_o)), cpu, result.epochs


if __name__ == "__main__":
    method = sys.argv[4] if len(sys.argv) > 4 else "energy_flow"
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), method)))

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
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from bench import methods, tasks
from bench.c2st import fast_c2st


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
    # Trained as a quality cell trains it (bench.methods), on the augmented x.
    trained = methods.train(
        method,
        theta,
        x,
        tasks.prior_distribution(task),
        tasks.box_prior(task),
        {},
        methods.Caps(),
        torch.device("cpu"),
        seed,
    )
    scores = []
    for index in range(1, 6):
        x_o = augment(tasks.observation(task, index)[None], mode)[0]
        with torch.no_grad():
            draws = trained.sample(10_000, x_o)
        scores.append(fast_c2st(tasks.reference_draws(task, index, 10_000), draws))
    return {
        "mode": mode,
        "budget": budget,
        "seed": seed,
        "family": method,
        "c2st": scores,
        "mean": sum(scores) / len(scores),
        "cpu": trained.train_cpu_seconds,
        "epochs": trained.epochs,
    }


if __name__ == "__main__":
    method = sys.argv[4] if len(sys.argv) > 4 else "energy_flow"
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), method)))

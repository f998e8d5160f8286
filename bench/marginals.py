"""Where a posterior is wrong: C2ST of the joint, of each parameter alone and of each pair.

The quick protocol's C2ST says *how* distinguishable a method's draws are from the
reference; this says *which* parameters give it away. A method whose 1-D marginals
score about 0.5 but whose joint scores high gets the dependence wrong; one whose
marginals of a few parameters score high gets those parameters' shapes (modes, width)
wrong. One method on one (task, budget) cell, the quick protocol's simulations (sbibm's
simulator from ``--seed``) and initialization, the fast C2ST for every score.

Example (the energy flow on slcp at 10^4, with two of its options set)::

    OMP_NUM_THREADS=1 python -m bench.marginals slcp 10000 energy_flow --tag cssn1 \\
        --options '{"coordinate_scaling": true, "spread_weighting": true, "sign_noise": 1}' --pairs

One JSON line per run goes to ``--out`` (default ``docs/bench/ablation/marginals.jsonl``):
the joint C2ST per observation and its mean, the 1-D C2ST of every parameter per
observation, with ``--pairs`` every pair's (for up to 5 parameters), and the training
cost. ``--save-draws DIR`` keeps each observation's draws as ``.pt`` files.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch

from . import methods, parallel, provenance, tasks
from .c2st import fast_c2st

OUT = Path("docs/bench/ablation/marginals.jsonl")
# Pairs are scored for at most this many parameters (10 pairs at 5, 45 at 10).
MAX_PAIR_DIM = 5


def scores(reference: torch.Tensor, draws: torch.Tensor, pairs: bool) -> dict[str, Any]:
    """Joint, per-parameter and (with ``pairs``) per-pair fast C2ST of ``draws`` ``(N, D)``."""
    dim = reference.shape[1]
    out: dict[str, Any] = {
        "joint": fast_c2st(reference, draws),
        "marginals": [fast_c2st(reference[:, [j]], draws[:, [j]]) for j in range(dim)],
    }
    if pairs and dim <= MAX_PAIR_DIM:
        out["pairs"] = {
            f"{a},{b}": fast_c2st(reference[:, [a, b]], draws[:, [a, b]])
            for a, b in itertools.combinations(range(dim), 2)
        }
    return out


def run(
    task_name: str,
    budget: int,
    method: str,
    options: dict[str, Any],
    num_observations: int = 5,
    num_draws: int = 10_000,
    pairs: bool = False,
    seed: int = 0,
    save_draws: Path | None = None,
) -> dict[str, Any]:
    """Trains ``method`` on the cell and scores its draws for observations ``1..n``."""
    parallel.one_thread()
    task = tasks.load_task(task_name)
    theta, x = tasks.simulate(task, budget, seed)
    device = torch.device("cpu")
    trained = methods.train(
        method,
        theta,
        x,
        tasks.prior_distribution(task),
        tasks.box_prior(task),
        options,
        methods.Caps(None, None),
        device,
        seed,
    )
    per_observation = []
    for index in range(1, num_observations + 1):
        reference = tasks.reference_draws(task, index, num_draws)
        draws = trained.sample(num_draws, tasks.observation(task, index).reshape(-1))
        if save_draws is not None:
            save_draws.mkdir(parents=True, exist_ok=True)
            torch.save(draws, save_draws / f"{method}_{task_name}_{budget}_{index}.pt")
        per_observation.append(scores(reference, draws, pairs))
    joint = [s["joint"] for s in per_observation]
    return {
        "task": task_name,
        "budget": budget,
        "method": method,
        "options": options,
        "seed": seed,
        "joint": joint,
        "joint_mean": sum(joint) / len(joint),
        "marginals": [s["marginals"] for s in per_observation],
        "pairs": [s["pairs"] for s in per_observation] if "pairs" in per_observation[0] else None,
        "train_cpu_seconds": trained.train_cpu_seconds,
        "epochs": trained.epochs,
        "hyperparameters": trained.hyperparameters,
        **provenance.environment(device),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.marginals", description=__doc__)
    parser.add_argument("task", help=f"one of {tasks.TASKS}")
    parser.add_argument("budget", type=int, help="simulations")
    parser.add_argument("method", help="a method of bench.quality, e.g. energy_flow")
    parser.add_argument("--tag", default="", help="name of this variant in the row")
    parser.add_argument("--options", type=json.loads, default={}, help="method options (JSON)")
    parser.add_argument("--num-observations", type=int, default=5)
    parser.add_argument("--num-draws", type=int, default=10_000)
    parser.add_argument("--pairs", action="store_true", help="also score every pair")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-draws", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    row = run(
        args.task,
        args.budget,
        args.method,
        args.options,
        args.num_observations,
        args.num_draws,
        args.pairs,
        args.seed,
        args.save_draws,
    )
    row["tag"] = args.tag
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as file:
        file.write(json.dumps(row) + "\n")
    marginals = [sum(col) / len(col) for col in zip(*row["marginals"], strict=True)]
    print(
        f"{args.task} {args.budget} {args.method} {args.tag}: joint {row['joint_mean']:.3f}, "
        f"marginals {', '.join(f'{m:.3f}' for m in marginals)}"
    )


if __name__ == "__main__":
    main()

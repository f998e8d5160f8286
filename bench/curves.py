"""Training curves of one sbiserve family on one sbibm task, with the fast C2ST at the end.

The quality benchmark (:mod:`bench.quality`) keeps one row per cell; this tool keeps the
whole run: every epoch's training and validation loss go to ``OUT/TAG_TASK_BUDGET.csv``
and one summary row (per-observation C2ST, epochs, best epoch, training time) is
appended to ``OUT/curves.jsonl``. It is how the energy flow's failures were diagnosed
(a validation score that stalls from epoch 2; a best epoch chosen before the posterior's
shape is learned). The seed is applied as :mod:`bench.methods` applies it, so a run
with a cell's options reproduces that cell of the quick protocol.

Example:
    python -m bench.curves slcp 10000 margin --options '{"fold_penalty": 1.0}'
    python -m bench.curves two_moons 1000 last --options '{"restore_best": false}'
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import time
from pathlib import Path
from typing import Any

import torch

from bench import provenance, records, tasks
from bench.c2st import c2st
from sbiserve.models import EpochInfo, build_estimator, fit, resolve_device, split_options

OUT = Path("docs/bench/curves")
RESULTS_FILE = "curves.jsonl"


def run(
    task_name: str,
    budget: int,
    tag: str,
    options: dict[str, Any],
    family: str = "energy_flow",
    observations: tuple[int, ...] = (1, 2, 3, 4, 5),
    seed: int = 0,
    num_draws: int = 10_000,
    out: Path = OUT,
) -> dict[str, Any]:
    """Trains, writes the curve, scores observations; returns the summary row."""
    device = resolve_device("auto")
    task = tasks.load_task(task_name)
    theta, x = tasks.cached_simulation(task_name, budget, seed)
    # Sized by the simulations and parameters, as bench.methods sizes a quality cell.
    model_config, train_config = split_options(
        family, {"seed": seed, "device": str(device), **options}, theta.shape[0], theta.shape[1]
    )
    torch.manual_seed(seed)
    estimator = build_estimator(
        family,
        theta.shape[1],
        x.shape[1],
        model_config,
        tasks.box_prior(task),
        seed=train_config.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    curve_path = out / f"{tag}_{task_name}_{budget}.csv"
    with curve_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train_loss", "val_loss", "best_val_loss", "lr", "seconds"])

        def progress(info: EpochInfo) -> None:
            writer.writerow(
                [
                    info.epoch,
                    f"{info.train_loss:.5f}",
                    f"{info.val_loss:.5f}",
                    f"{info.best_val_loss:.5f}",
                    f"{info.learning_rate:.2e}",
                    f"{info.elapsed_s:.1f}",
                ]
            )
            f.flush()

        start = time.perf_counter()
        result = fit(estimator, theta, x, train_config, progress=progress)
        train_seconds = time.perf_counter() - start
    scores = []
    for index in observations:
        with torch.no_grad():
            draws = estimator.sample((num_draws,), x=tasks.observation(task, index).to(device))
        scores.append(c2st(tasks.reference_draws(task, index, num_draws), draws.cpu(), 5))
    row = {
        "task": task_name,
        "budget": budget,
        "tag": tag,
        "family": family,
        "seed": seed,
        "options": options,
        "model": model_config.to_dict(),
        "c2st": [round(float(s), 4) for s in scores],
        "c2st_mean": round(sum(scores) / len(scores), 4),
        "observations": list(observations),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "kept_epoch": result.kept_epoch,
        "train_seconds": round(train_seconds, 1),
        "curve": curve_path.name,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
        **provenance.environment(device),
    }
    records.append_row(out / RESULTS_FILE, row)
    return row


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.curves", description=__doc__)
    parser.add_argument("task", choices=tasks.TASKS)
    parser.add_argument("budget", type=int)
    parser.add_argument("tag", help="name of the variant (file names, the row's tag)")
    parser.add_argument("--options", type=json.loads, default={}, help="JSON hyperparameters")
    parser.add_argument("--family", default="energy_flow")
    parser.add_argument("--observations", default="1,2,3,4,5", help="comma list, 1-10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-draws", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    row = run(
        args.task,
        args.budget,
        args.tag,
        args.options,
        args.family,
        tuple(int(v) for v in args.observations.split(",")),
        args.seed,
        args.num_draws,
        args.out,
    )
    print(json.dumps(row))


if __name__ == "__main__":
    main()

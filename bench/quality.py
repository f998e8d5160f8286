"""Posterior quality on sbibm tasks: C2ST of every method trained on the same simulations.

For each task, budget and seed the simulator runs once; every method trains on those
simulations; for observations 1..n each draws ``--num-draws`` times and is scored with
``sbibm.metrics.c2st`` against sbibm's reference draws. One JSON line per (task, budget,
seed, method) goes to ``OUT/quality.jsonl`` as soon as it is done, rows already there are
skipped, and ``OUT/quality.md`` plus PNG plots are rewritten from all rows at the end.

Example:
    python -m bench.quality --tasks two_moons --budgets 1000 --num-observations 3 \\
        --out docs/bench
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench import methods as methods_module
from bench import provenance, published, quality_report, records, tasks
from bench.c2st import c2st
from bench.methods import Caps
from bench.trained import Trained
from sbiserve.models import resolve_device

RESULTS_FILE = "quality.jsonl"
KEY_FIELDS = ("task", "budget", "seed", "method")


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """Everything one quality run is asked to do."""

    tasks: list[str]
    budgets: list[int]
    methods: list[str]
    seeds: list[int]
    num_observations: int
    num_draws: int
    c2st_folds: int
    c2st_max_iter: int | None
    caps: Caps
    hyperparameters: dict[str, dict[str, Any]]
    out: Path
    published: Path | None
    smoke: bool = False
    report_only: bool = False


def _log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def evaluate(trained: Trained, task: Any, settings: QualitySettings) -> dict[str, Any]:
    """Draws for each observation, timing them, and scores the draws with C2ST."""
    scores, sample_seconds, drawn, c2st_seconds = [], [], [], 0.0
    for index in range(1, settings.num_observations + 1):
        x_o = tasks.observation(task, index)
        start = time.perf_counter()
        draws = trained.sample(settings.num_draws, x_o)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        sample_seconds.append(time.perf_counter() - start)
        if not bool(torch.isfinite(draws).all()):
            raise FloatingPointError(f"non-finite posterior draws for observation {index}")
        drawn.append(draws.shape[0])
        start = time.perf_counter()
        reference = tasks.reference_draws(task, index, settings.num_draws)
        scores.append(c2st(reference, draws, settings.c2st_folds, settings.c2st_max_iter))
        c2st_seconds += time.perf_counter() - start
    return {
        "observations": list(range(1, settings.num_observations + 1)),
        "c2st": scores,
        "c2st_mean": sum(scores) / len(scores),
        "draws_obtained_min": min(drawn),
        "sample_seconds": sample_seconds,
        "sample_seconds_mean": sum(sample_seconds) / len(sample_seconds),
        "c2st_seconds": c2st_seconds,
    }


def run_method(
    method: str,
    task: Any,
    theta: torch.Tensor,
    x: torch.Tensor,
    seed: int,
    settings: QualitySettings,
    device: torch.device,
) -> dict[str, Any]:
    """Trains and evaluates one method; failures become a row with an ``error`` field."""
    options = methods_module.options_for(method, settings.hyperparameters)
    row: dict[str, Any] = {"family": methods_module.base_name(method), "options": options}
    try:
        trained = methods_module.train(
            method,
            theta,
            x,
            tasks.prior_distribution(task, device),
            tasks.box_prior(task),
            options,
            settings.caps,
            device,
            seed,
        )
        row.update(
            train_seconds=trained.train_seconds,
            train_cpu_seconds=trained.train_cpu_seconds,
            load_average_1min=os.getloadavg()[0],
            epochs=trained.epochs,
            hyperparameters=trained.hyperparameters,
        )
        row.update(evaluate(trained, task, settings))
        row["error"] = None
    except Exception as error:  # one failing method must not end a long run
        row["error"] = f"{type(error).__name__}: {error}"
        _log(traceback.format_exc())
    return row


def run(settings: QualitySettings) -> Path:
    """Runs every missing (task, budget, seed, method) row, then rewrites the report."""
    results = settings.out / RESULTS_FILE
    done = records.row_keys(records.read_rows(results), KEY_FIELDS)
    device = resolve_device("auto")
    environment = provenance.environment(device)
    for task_name in settings.tasks:
        task = tasks.load_task(task_name)
        for budget in settings.budgets:
            for seed in settings.seeds:
                todo = [m for m in settings.methods if (task_name, budget, seed, m) not in done]
                if not todo:
                    continue
                start = time.perf_counter()
                theta, x = tasks.simulate(task, budget, seed)
                simulate_seconds = time.perf_counter() - start
                for method in todo:
                    _log(f"{task_name} budget={budget} seed={seed} {method}: training")
                    row = run_method(method, task, theta, x, seed, settings, device)
                    row.update(
                        task=task_name,
                        budget=budget,
                        seed=seed,
                        method=method,
                        num_draws=settings.num_draws,
                        c2st_folds=settings.c2st_folds,
                        c2st_max_iter=settings.c2st_max_iter,
                        simulate_seconds=simulate_seconds,
                        caps=dataclasses.asdict(settings.caps),
                        smoke=settings.smoke,
                        timestamp=datetime.datetime.now(datetime.UTC).isoformat(),
                        **environment,
                    )
                    records.append_row(results, row)
                    _log(
                        f"{task_name} budget={budget} seed={seed} {method}: "
                        f"c2st={row.get('c2st_mean')} train={row.get('train_seconds')}s "
                        f"error={row['error']}"
                    )
    quality_report.write(
        records.read_rows(results), settings.out, published.load(settings.published)
    )
    return results


def _ints(text: str) -> list[int]:
    return [int(float(v)) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> QualitySettings:
    """Reads the command line into :class:`QualitySettings` (``--smoke`` fills defaults)."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument(
        "--tasks", type=_names, help=f"comma-separated; default all of {tasks.TASKS}"
    )
    parser.add_argument("--budgets", type=_ints, help="simulation budgets, default 1000,10000")
    parser.add_argument("--methods", type=_names, help="default: every family, npe_nsf, npe_maf")
    parser.add_argument("--seed", type=_ints, default=[0], help="one seed or a comma list")
    parser.add_argument("--num-observations", type=int, help="observations 1..n (max 10)")
    parser.add_argument("--num-draws", type=int, help="draws per observation (default 10000)")
    parser.add_argument("--c2st-folds", type=int, help="C2ST cross-validation folds (default 5)")
    parser.add_argument(
        "--c2st-max-iter", type=int, help="cap the C2ST classifier's epochs (not sbibm's C2ST)"
    )
    parser.add_argument("--max-epochs", type=int, help="cap on epochs for every method")
    parser.add_argument("--max-seconds", type=float, help="cap on training seconds (sbiserve)")
    parser.add_argument(
        "--hyperparameters",
        type=json.loads,
        default={},
        help='JSON {"method": {option: value}}; keys may be tagged methods "family:tag"',
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--published", type=Path, default=published.default_path())
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests (seconds)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report only")
    args = parser.parse_args(argv)
    smoke = args.smoke
    settings = QualitySettings(
        tasks=args.tasks or (["two_moons"] if smoke else list(tasks.TASKS)),
        budgets=args.budgets or ([200] if smoke else [1000, 10000]),
        methods=args.methods or methods_module.default_methods(),
        seeds=args.seed,
        num_observations=args.num_observations or (2 if smoke else 10),
        num_draws=args.num_draws or (500 if smoke else 10_000),
        c2st_folds=args.c2st_folds or (2 if smoke else 5),
        c2st_max_iter=args.c2st_max_iter or (30 if smoke else None),
        caps=Caps(
            max_epochs=args.max_epochs or (2 if smoke else None),
            max_seconds=args.max_seconds,
        ),
        hyperparameters=args.hyperparameters,
        out=args.out,
        published=args.published,
        smoke=smoke,
        report_only=args.report_only,
    )
    methods_module.check_methods(settings.methods)
    for name in settings.tasks:
        if name not in tasks.TASKS:
            parser.error(f"unknown task {name!r}; available: {', '.join(tasks.TASKS)}")
    if not 1 <= settings.num_observations <= 10:
        parser.error("--num-observations must lie in 1..10")
    return settings


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    settings = parse_args(argv)
    if settings.report_only:
        rows = records.read_rows(settings.out / RESULTS_FILE)
        quality_report.write(rows, settings.out, published.load(settings.published))
        return
    run(settings)


if __name__ == "__main__":
    main()

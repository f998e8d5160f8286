"""Posterior quality on sbibm tasks: C2ST of every method trained on the same simulations.

A *cell* is one (task, budget, seed, method). Each cell simulates its task with sbibm's
simulator from the seed (so every method of a task, budget and seed trains on the same
simulations, whichever process runs it), trains the method, draws ``--num-draws`` times
for observations 1..n and scores the draws against sbibm's reference draws with the
C2ST named by ``--c2st``: ``fast`` (:func:`bench.c2st.fast_c2st`), ``sbibm``
(``sbibm.metrics.c2st``) or ``both`` (the row's headline is the fast one; sbibm's is kept
beside it as ``c2st_sbibm``). ``--jobs N`` runs N cells at once in separate processes
with one torch thread each. One JSON line per cell goes to ``OUT/quality.jsonl`` as soon
as it is done, cells already there are skipped, and ``OUT/quality.md`` plus PNG plots
are rewritten from all rows at the end.

``--quick`` is the protocol the energy-flow work is measured with: all eight tasks,
10^3 and 10^4 simulations, observations 1-5, the energy flow beside sbi's NPE-NSF, the
fast C2ST, results in ``docs/bench/quick``.

Example:
    python -m bench.quality --quick --jobs 2
    python -m bench.quality --tasks two_moons --budgets 1000 --num-observations 3 \\
        --c2st both --out docs/bench
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench import methods as methods_module
from bench import parallel, provenance, published, quality_report, records, tasks
from bench.c2st import C2ST_KINDS, FastC2stSchedule, c2st
from bench.methods import Caps
from bench.trained import Trained
from sbiserve.models import resolve_device

RESULTS_FILE = "quality.jsonl"
KEY_FIELDS = ("task", "budget", "seed", "method")
QUICK_METHODS = ("energy_flow", "npe_nsf")
QUICK_OUT = Path("docs/bench/quick")
SMOKE_SCHEDULE = FastC2stSchedule(steps=50)


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
    c2st_kind: str
    caps: Caps
    hyperparameters: dict[str, dict[str, Any]]
    out: Path
    published: Path | None
    jobs: int = 1
    smoke: bool = False
    report_only: bool = False


def _log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _scores(
    reference: torch.Tensor, draws: torch.Tensor, settings: QualitySettings
) -> dict[str, float]:
    """C2ST of one observation's draws, by kind (``both``: sbibm's and the fast one)."""
    kinds = ["sbibm", "fast"] if settings.c2st_kind == "both" else [settings.c2st_kind]
    schedule = SMOKE_SCHEDULE if settings.smoke else None
    return {
        kind: c2st(reference, draws, settings.c2st_folds, kind, schedule)  # type: ignore[arg-type]
        for kind in kinds
    }


def evaluate(trained: Trained, task: Any, settings: QualitySettings) -> dict[str, Any]:
    """Draws for each observation, timing them, and scores the draws with C2ST."""
    scores: dict[str, list[float]] = {}
    sample_seconds, drawn, c2st_seconds = [], [], 0.0
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
        for kind, value in _scores(reference, draws, settings).items():
            scores.setdefault(kind, []).append(value)
        c2st_seconds += time.perf_counter() - start
    # With both, the fast C2ST is the headline (every row of a run is then scored alike)
    # and sbibm's is kept beside it.
    headline = scores["fast"] if "fast" in scores else scores["sbibm"]
    row: dict[str, Any] = {
        "observations": list(range(1, settings.num_observations + 1)),
        "c2st": headline,
        "c2st_mean": sum(headline) / len(headline),
        "draws_obtained_min": min(drawn),
        "sample_seconds": sample_seconds,
        "sample_seconds_mean": sum(sample_seconds) / len(sample_seconds),
        "c2st_seconds": c2st_seconds,
    }
    if "sbibm" in scores and "fast" in scores:
        row["c2st_sbibm"] = scores["sbibm"]
        row["c2st_sbibm_mean"] = sum(scores["sbibm"]) / len(scores["sbibm"])
    return row


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


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (task, budget, seed, method) to train and score."""

    task: str
    budget: int
    seed: int
    method: str
    settings: QualitySettings


@functools.lru_cache(maxsize=4)
def _simulations(
    task_name: str, budget: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The simulations of a cell, simulated once for all its methods and processes."""
    start = time.perf_counter()
    theta, x = tasks.cached_simulation(task_name, budget, seed)
    return theta, x, time.perf_counter() - start


def run_cell(cell: Cell) -> dict[str, Any]:
    """Simulates, trains and scores one cell; returns its complete row."""
    settings = cell.settings
    device = resolve_device("auto")
    task = tasks.load_task(cell.task)
    theta, x, simulate_seconds = _simulations(cell.task, cell.budget, cell.seed)
    _log(f"{cell.task} budget={cell.budget} seed={cell.seed} {cell.method}: training")
    row = run_method(cell.method, task, theta, x, cell.seed, settings, device)
    row.update(
        task=cell.task,
        budget=cell.budget,
        seed=cell.seed,
        method=cell.method,
        num_draws=settings.num_draws,
        c2st_folds=settings.c2st_folds,
        c2st_kind=settings.c2st_kind,
        simulate_seconds=simulate_seconds,
        caps=dataclasses.asdict(settings.caps),
        smoke=settings.smoke,
        jobs=settings.jobs,
        timestamp=datetime.datetime.now(datetime.UTC).isoformat(),
        **provenance.environment(device),
    )
    return row


def cells_to_run(settings: QualitySettings, done: set[tuple[Any, ...]]) -> list[Cell]:
    """Every cell not in ``done``, small budgets first.

    A run cut short then still holds complete tables for its smaller budgets.
    """
    cells = [
        Cell(task, budget, seed, method, settings)
        for budget in sorted(settings.budgets)
        for task in settings.tasks
        for seed in settings.seeds
        for method in settings.methods
        if (task, budget, seed, method) not in done
    ]
    return cells


def run(settings: QualitySettings) -> Path:
    """Runs every missing cell (``settings.jobs`` at once), then rewrites the report."""
    results = settings.out / RESULTS_FILE
    done = records.row_keys(records.read_rows(results), KEY_FIELDS)
    cells = cells_to_run(settings, done)
    _log(f"{len(cells)} cells to run with {settings.jobs} process(es)")
    for cell, row in parallel.run_cells(run_cell, cells, settings.jobs):
        records.append_row(results, row)
        _log(
            f"{cell.task} budget={cell.budget} seed={cell.seed} {cell.method}: "
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
        "--c2st",
        choices=(*C2ST_KINDS, "both"),
        help="fast (torch), sbibm (sklearn, slow) or both; default sbibm (fast with --quick)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once (processes)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="all eight tasks, 10^3 and 10^4, observations 1-5, energy_flow and npe_nsf, "
        "fast C2ST, out docs/bench/quick (each can still be overridden)",
    )
    parser.add_argument("--max-epochs", type=int, help="cap on epochs for every method")
    parser.add_argument("--max-seconds", type=float, help="cap on training seconds (sbiserve)")
    parser.add_argument(
        "--hyperparameters",
        type=json.loads,
        default={},
        help='JSON {"method": {option: value}}; keys may be tagged methods "family:tag"',
    )
    parser.add_argument("--out", type=Path, help="results folder (default docs/bench)")
    parser.add_argument("--published", type=Path, default=published.default_path())
    parser.add_argument("--smoke", action="store_true", help="tiny run for tests (seconds)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report only")
    args = parser.parse_args(argv)
    smoke, quick = args.smoke, args.quick
    default_methods = list(QUICK_METHODS) if quick else methods_module.default_methods()
    settings = QualitySettings(
        tasks=args.tasks or (["two_moons"] if smoke else list(tasks.TASKS)),
        budgets=args.budgets or ([200] if smoke else [1000, 10000]),
        methods=args.methods or default_methods,
        seeds=args.seed,
        num_observations=args.num_observations or (2 if smoke else 5 if quick else 10),
        num_draws=args.num_draws or (500 if smoke else 10_000),
        c2st_folds=args.c2st_folds or (2 if smoke else 5),
        c2st_kind=args.c2st or ("fast" if smoke or quick else "sbibm"),
        caps=Caps(
            max_epochs=args.max_epochs or (2 if smoke else None),
            max_seconds=args.max_seconds,
        ),
        hyperparameters=args.hyperparameters,
        out=args.out or (QUICK_OUT if quick else Path("docs/bench")),
        published=args.published,
        jobs=max(1, args.jobs),
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

"""How closely :func:`bench.c2st.fast_c2st` agrees with ``sbibm.metrics.c2st``.

Two stages, both resumable:

1. ``draws``: real method outputs at every quality level. On each task (1,000
   simulations, sbibm's simulator, seed 0) sbi's NPE-NSF and sbiserve's energy flow are
   trained for a few epoch caps (1 epoch gives C2ST near 1, a full run gives a good
   posterior), and each draws 10,000 samples for observations ``1..n``; every draw set is
   saved under ``--pairs-dir`` with its reference draws.
2. ``score``: each saved pair is scored by sbibm's C2ST (once: it is the slow one) and by
   the fast C2ST; one JSON line per pair goes to ``OUT/c2st_agreement.jsonl`` and the
   table ``OUT/c2st_agreement.md`` is rewritten.

Example:
    python -m bench.c2st_agreement --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench import methods as methods_module
from bench import parallel, provenance, records, tasks
from bench.c2st import FastC2stSchedule, fast_c2st, sbibm_c2st
from bench.methods import Caps
from bench.tables import markdown_table

RESULTS_FILE = "c2st_agreement.jsonl"
REPORT_FILE = "c2st_agreement.md"

# task -> observations drawn for; 10-parameter tasks get one (sbibm's C2ST takes minutes)
DEFAULT_TASKS: dict[str, int] = {
    "two_moons": 2,
    "gaussian_mixture": 2,
    "slcp": 2,
    "gaussian_linear": 1,
    "bernoulli_glm": 1,
}
# (method, epoch cap; None = the method's own stopping rule)
DEFAULT_VARIANTS: tuple[tuple[str, int | None], ...] = (
    ("npe_nsf", 1),
    ("npe_nsf", 5),
    ("npe_nsf", None),
    ("energy_flow", 5),
    ("energy_flow", 40),
)


@dataclasses.dataclass(frozen=True)
class DrawCell:
    """One trained model: it draws for observations ``1..num_observations``."""

    task: str
    method: str
    max_epochs: int | None
    num_observations: int
    budget: int
    pairs_dir: Path


def pair_name(task: str, method: str, max_epochs: int | None, observation: int) -> str:
    """File stem of one saved pair."""
    return f"{task}__{method}__ep{max_epochs or 'full'}__obs{observation}"


def make_draws(cell: DrawCell) -> list[str]:
    """Trains one model and saves its pairs; returns the pair names written."""
    task = tasks.load_task(cell.task)
    theta, x = tasks.simulate(task, cell.budget, 0)
    device = torch.device("cpu")
    trained = methods_module.train(
        cell.method,
        theta,
        x,
        tasks.prior_distribution(task, device),
        tasks.box_prior(task),
        {},
        Caps(max_epochs=cell.max_epochs),
        device,
        0,
    )
    names = []
    for index in range(1, cell.num_observations + 1):
        name = pair_name(cell.task, cell.method, cell.max_epochs, index)
        draws = trained.sample(10_000, tasks.observation(task, index))
        reference = tasks.reference_draws(task, index, 10_000)
        cell.pairs_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"reference": reference, "draws": draws}, cell.pairs_dir / f"{name}.pt")
        names.append(name)
    return names


@dataclasses.dataclass(frozen=True)
class ScoreCell:
    """One saved pair to score; ``sbibm`` is its known sbibm C2ST, if already measured."""

    path: Path
    sbibm: float | None
    schedule: FastC2stSchedule


def score(cell: ScoreCell) -> dict[str, Any]:
    """Both C2STs (sbibm's only when not known yet) and their wall times for one pair."""
    pair = torch.load(cell.path)
    reference, draws = pair["reference"], pair["draws"]
    row: dict[str, Any] = {"pair": cell.path.stem, "dim": int(reference.shape[1])}
    start = time.perf_counter()
    row["fast"] = fast_c2st(reference, draws, schedule=cell.schedule)
    row["fast_seconds"] = time.perf_counter() - start
    if cell.sbibm is None:
        start = time.perf_counter()
        row["sbibm"] = sbibm_c2st(reference, draws)
        row["sbibm_seconds"] = time.perf_counter() - start
    return row


def quality_pairs(path: Path) -> list[dict[str, Any]]:
    """Per-observation pairs scored by both C2STs in a quality run (``--c2st both``).

    They have the same fields as this module's rows, without per-pair times.
    """
    pairs = []
    for row in records.read_rows(path):
        if row.get("error") is None and "c2st_sbibm" in row:
            for obs, fast, slow in zip(
                row["observations"], row["c2st"], row["c2st_sbibm"], strict=True
            ):
                pairs.append(
                    {
                        "pair": f"{row['task']}__{row['method']}__{row['budget']}sims__obs{obs}",
                        "dim": None,
                        "sbibm": slow,
                        "fast": fast,
                    }
                )
    return pairs


def _time(row: dict[str, Any], field: str, digits: int) -> str:
    return f"{row[field]:.{digits}f} s" if field in row else "–"


def write_report(rows: list[dict[str, Any]], out: Path) -> None:
    """Writes the agreement table: one line per pair, then the summary."""
    lines = []
    for row in sorted(rows, key=lambda r: r["sbibm"]):
        lines.append(
            [
                row["pair"].replace("__", " "),
                str(row["dim"] or "–"),
                f"{row['sbibm']:.3f}",
                f"{row['fast']:.3f}",
                f"{row['fast'] - row['sbibm']:+.3f}",
                _time(row, "sbibm_seconds", 0),
                _time(row, "fast_seconds", 1),
            ]
        )
    diffs = [abs(r["fast"] - r["sbibm"]) for r in rows]
    timed = [r for r in rows if "sbibm_seconds" in r]
    speedups = [r["sbibm_seconds"] / r["fast_seconds"] for r in timed] or [float("nan")]
    last = timed[-1] if timed else {}
    summary = [
        f"- pairs: {len(rows)}; sbibm C2ST from {min(r['sbibm'] for r in rows):.3f} to "
        f"{max(r['sbibm'] for r in rows):.3f}",
        f"- |fast - sbibm|: mean {statistics.fmean(diffs):.4f}, max {max(diffs):.4f}; "
        f"within 0.015: {sum(d <= 0.015 for d in diffs)} of {len(rows)}",
        f"- time (pairs of this harness): sbibm {sum(r['sbibm_seconds'] for r in timed):.0f} s "
        f"in all, fast {sum(r['fast_seconds'] for r in timed):.0f} s; speed-up per pair median "
        f"{statistics.median(speedups):.0f}x",
        f"- machine: {last.get('cpu')}, one torch thread per process; fast C2ST "
        f"schedule {last.get('schedule')}",
    ]
    text = [
        "# Fast C2ST against sbibm's C2ST (generated by `python -m bench.c2st_agreement`)",
        "",
        "Each pair is 10,000 reference draws against 10,000 draws of a real method "
        "(sbi's NPE-NSF or sbiserve's energy flow, trained on 1,000 simulations with the "
        "epoch cap named) for one observation, or (pairs named with a simulation budget) "
        "the draws of a quality run scored with `--c2st both`. Both scores use 5 folds and "
        "seed 1.",
        "",
        *summary,
        "",
        *markdown_table(
            [
                "pair (task, method, epochs, observation)",
                "D",
                "sbibm",
                "fast",
                "diff",
                "sbibm time",
                "fast time",
            ],
            lines,
        ),
        "",
    ]
    (out / REPORT_FILE).write_text("\n".join(text))


def _log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.c2st_agreement", description=__doc__)
    parser.add_argument(
        "--stage",
        choices=("draws", "score", "all", "report"),
        default="all",
        help="report: rewrite the table from the rows already measured",
    )
    parser.add_argument("--jobs", type=int, default=1, help="processes side by side")
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--pairs-dir", type=Path, default=Path("out/c2st_pairs"))
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument(
        "--schedule", type=json.loads, default={}, help="FastC2stSchedule fields as JSON"
    )
    parser.add_argument(
        "--rescore", action="store_true", help="recompute the fast C2ST of every pair"
    )
    parser.add_argument(
        "--quality",
        type=Path,
        action="append",
        default=[],
        help="also tabulate the pairs of a quality results file run with --c2st both",
    )
    args = parser.parse_args(argv)
    if args.stage in ("draws", "all"):
        cells = [
            DrawCell(task, method, epochs, num_obs, args.budget, args.pairs_dir)
            for task, num_obs in DEFAULT_TASKS.items()
            for method, epochs in DEFAULT_VARIANTS
            if not (args.pairs_dir / f"{pair_name(task, method, epochs, num_obs)}.pt").exists()
        ]
        for _cell, names in parallel.run_cells(make_draws, cells, args.jobs):
            _log(f"saved {names}")
    if args.stage in ("score", "all", "report"):
        results = args.out / RESULTS_FILE
        rows = {r["pair"]: r for r in records.read_rows(results)}
        schedule = FastC2stSchedule(**args.schedule)
        paths = sorted(args.pairs_dir.glob("*.pt"))
        todo = [
            ScoreCell(p, rows[p.stem]["sbibm"] if p.stem in rows else None, schedule)
            for p in paths
            if args.stage != "report" and (args.rescore or p.stem not in rows)
        ]
        # Low-dimensional pairs first: sbibm's C2ST on 10 parameters takes up to tens of
        # minutes per pair when the sets are alike, so those come last.
        todo.sort(key=lambda c: (c.sbibm is None, torch.load(c.path)["draws"].shape[1]))
        environment = provenance.environment(torch.device("cpu"))
        for _cell, row in parallel.run_cells(score, todo, args.jobs):
            old = rows.get(row["pair"], {})
            row = {**old, **row, "schedule": dataclasses.asdict(schedule), **environment}
            rows[row["pair"]] = row
            _log(f"{row['pair']}: sbibm {row['sbibm']:.4f} fast {row['fast']:.4f}")
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows.values()))
        extra = [pair for path in args.quality for pair in quality_pairs(path)]
        if rows or extra:
            write_report([*rows.values(), *extra], args.out)


if __name__ == "__main__":
    main()

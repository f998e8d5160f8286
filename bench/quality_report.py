"""The quality report: a markdown table and PNG plots, rebuilt from every JSONL row."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import plots
from bench.published import SHOWN, Published
from bench.tables import markdown_table, method_order, ordered

REPORT_FILE = "quality.md"
C2ST_PLOT = "quality_c2st.png"
TIME_PLOT = "quality_train_time.png"

SMOKE_NOTE = [
    "**Smoke run**: tiny budget, 1-2 epochs and a C2ST classifier with capped epochs; "
    "these numbers only show that the harness works.",
    "",
]

Group = tuple[str, int, str]
"""``(task, budget, method)``."""


def _groups(rows: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Successful rows grouped by (task, budget, method); seeds are pooled."""
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("error") is None:
            groups[(row["task"], row["budget"], row["method"])].append(row)
    return groups


def _mean(rows: list[dict[str, Any]], field: str) -> float:
    return statistics.fmean(float(r[field]) for r in rows)


def _c2st_cell(rows: list[dict[str, Any]], best: bool) -> str:
    means = [r["c2st_mean"] for r in rows]
    text = f"{statistics.fmean(means):.3f}"
    if len(means) > 1:
        text += f" ± {statistics.stdev(means):.3f}"
    return f"**{text}**" if best else text


def c2st_table(rows: list[dict[str, Any]], figures: Published) -> list[str]:
    """Markdown lines: methods side by side per task and budget, published columns last."""
    groups = _groups(rows)
    methods = method_order([r["method"] for r in rows])
    cells = ordered([(r["task"], r["budget"]) for r in rows])
    shown = {title: name for title, name in SHOWN.items() if any(k[1] == name for k in figures)}
    lines = []
    for task, budget in cells:
        present = {m: groups[(task, budget, m)] for m in methods if groups.get((task, budget, m))}
        best = min((_mean(g, "c2st_mean") for g in present.values()), default=None)
        obs = ordered([len(r["observations"]) for g in present.values() for r in g])
        line = [task, f"{budget:,}", "/".join(map(str, obs)) or "–"]
        for m in methods:
            group = present.get(m)
            line.append(_c2st_cell(group, _mean(group, "c2st_mean") == best) if group else "–")
        for name in shown.values():
            figure = figures.get((task, name, budget))
            line.append(f"{figure:.3f}" if figure is not None else "–")
        lines.append(line)
    return markdown_table(["task", "budget", "obs", *methods, *shown], lines)


def _cost_cell(rows: list[dict[str, Any]]) -> str:
    """``wall s (cpu s) / epochs / draw-call s``; older rows lack the CPU time."""
    cpu = [r["train_cpu_seconds"] for r in rows if "train_cpu_seconds" in r]
    train = f"{_mean(rows, 'train_seconds'):.0f} s"
    if len(cpu) == len(rows):
        train += f" ({statistics.fmean(cpu):.0f} s CPU)"
    return f"{train} / {_mean(rows, 'epochs'):.0f} ep / {_mean(rows, 'sample_seconds_mean'):.2f} s"


def cost_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: training seconds and epochs, and seconds per draw call, per method."""
    groups = _groups(rows)
    methods = method_order([r["method"] for r in rows])
    lines = []
    for task, budget in ordered([(r["task"], r["budget"]) for r in rows]):
        line = [task, f"{budget:,}"]
        for m in methods:
            g = groups.get((task, budget, m))
            line.append(_cost_cell(g) if g else "–")
        lines.append(line)
    return markdown_table(["task", "budget", *methods], lines)


def settings_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines describing how the rows were produced."""
    ok = [r for r in rows if r.get("error") is None]
    lines = [
        f"- draws per observation: {ordered([r['num_draws'] for r in rows])}; "
        f"C2ST folds: {ordered([r['c2st_folds'] for r in rows])}; C2ST classifier epoch "
        f"cap (smoke only): {ordered([r['c2st_max_iter'] for r in rows])}; "
        f"seeds: {ordered([r['seed'] for r in rows])}",
        f"- training caps: {ordered([json.dumps(r['caps']) for r in rows])}",
        f"- device: {ordered([r['device'] for r in rows])}; "
        f"CPU: {ordered([r['cpu'] for r in rows])}",
        f"- versions: {ordered([json.dumps(r['versions'], sort_keys=True) for r in rows])}",
        f"- git: {ordered([json.dumps(r['git']) for r in rows])}",
        "- hyperparameters (every option each method ran with):",
    ]
    for method in ordered([r["method"] for r in ok]):
        sets = ordered([json.dumps(r["hyperparameters"]) for r in ok if r["method"] == method])
        lines += [f"  - `{method}`: `{s}`" for s in sets]
    errors = [r for r in rows if r.get("error") is not None]
    if errors:
        lines.append("- failed runs:")
        lines += [f"  - {r['task']} {r['budget']} {r['method']}: {r['error']}" for r in errors]
    return lines


def write(rows: list[dict[str, Any]], out: Path, figures: Published) -> None:
    """Writes ``quality.md`` and the two plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        return
    lines = [
        "# Posterior quality (generated by `python -m bench.quality`)",
        "",
        "C2ST of each method's draws against sbibm's reference draws (`sbibm.metrics.c2st`, "
        "0.5 = indistinguishable, 1.0 = disjoint; lower is better), mean over observations "
        "1..obs; ± is the spread over seeds. Best measured figure per row in bold. Every "
        "method in a row trained on the same simulations in the same run. Published "
        "columns come from other papers and machines: context, not part of the comparison.",
        "",
        *(SMOKE_NOTE if any(r.get("smoke") for r in rows) else []),
        *c2st_table(rows, figures),
        "",
        "Cost per method: training wall time (and this process's CPU time, where recorded) / "
        "epochs / seconds for one call drawing the draws of one observation (mean over "
        "observations). Wall times depend on how busy the machine was.",
        "",
        *cost_table(rows),
        "",
        "## Settings",
        "",
        *settings_lines(rows),
        "",
        f"![C2ST against budget]({C2ST_PLOT})",
        "",
        f"![Training time]({TIME_PLOT})",
        "",
    ]
    (out / REPORT_FILE).write_text("\n".join(lines))
    ok = [r for r in rows if r.get("error") is None]
    plots.c2st_against_budget(ok, figures, out / C2ST_PLOT)
    plots.training_time(ok, out / TIME_PLOT)

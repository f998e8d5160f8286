"""PNG plots of benchmark rows.

Figures are built with ``matplotlib.figure.Figure`` directly (not pyplot), so no display
backend or global figure state is involved.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.baselines import BASELINES
from bench.methods import base_name
from bench.published import Published
from bench.tables import method_order, ordered


def _style(method: str, methods: list[str]) -> dict[str, Any]:
    """A method's line style, the same in every panel: sbi baselines dashed with squares."""
    color = f"C{methods.index(method) % 10}"
    if base_name(method) in BASELINES:
        return {"color": color, "marker": "s", "linestyle": "--"}
    return {"color": color, "marker": "o", "linestyle": "-"}


def _legend(figure: Figure, axes: Any) -> None:
    """One legend below the panels with every label drawn in any panel."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="lower center", ncol=4, fontsize=8)


def _save(figure: Figure, path: Path, legend_space: float = 0.0) -> None:
    """Lays out (leaving ``legend_space`` of the height at the bottom) and saves."""
    figure.tight_layout(rect=(0.0, legend_space, 1.0, 1.0))
    figure.savefig(path, dpi=110)


def c2st_against_budget(rows: list[dict[str, Any]], figures: Published, path: Path) -> None:
    """One panel per task: mean C2ST against budget, a line per method.

    The published NPE figure is drawn as grey crosses for context.
    """
    task_names = ordered([r["task"] for r in rows])
    methods = method_order([r["method"] for r in rows])
    cols = min(4, max(1, len(task_names)))
    nrows = math.ceil(len(task_names) / cols) if task_names else 1
    figure = Figure(figsize=(3.6 * cols, 3.0 * nrows))
    axes = figure.subplots(nrows, cols, squeeze=False)
    for ax, task in zip(axes.flat, task_names, strict=False):
        for method in methods:
            points: dict[int, list[float]] = defaultdict(list)
            for r in rows:
                if r["task"] == task and r["method"] == method:
                    points[r["budget"]].append(r["c2st_mean"])
            budgets = sorted(points)
            means = [sum(points[b]) / len(points[b]) for b in budgets]
            ax.plot(budgets, means, label=method, **_style(method, methods))
        npe = sorted((b, v) for (t, m, b), v in figures.items() if t == task and m == "NPE")
        if npe:
            ax.plot(*zip(*npe, strict=True), "x--", color="grey", label="NPE (sbibm paper)")
        ax.set_xscale("log")
        ax.set_ylim(0.45, 1.02)
        ax.set_title(task)
        ax.set_xlabel("simulations")
        ax.set_ylabel("C2ST (lower is better)")
    for ax in list(axes.flat)[len(task_names) :]:
        ax.axis("off")
    _legend(figure, axes.flat)
    _save(figure, path, legend_space=0.12 if nrows > 1 else 0.2)


def training_time(rows: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: training seconds per method, one group per task and budget."""
    cells = ordered([(r["task"], r["budget"]) for r in rows])
    methods = method_order([r["method"] for r in rows])
    width = 0.8 / max(1, len(methods))
    figure = Figure(figsize=(max(6.0, 1.1 * len(cells) + 2), 3.8))
    ax = figure.subplots()
    for i, method in enumerate(methods):
        heights = []
        for task, budget in cells:
            times = [
                r["train_seconds"]
                for r in rows
                if (r["task"], r["budget"], r["method"]) == (task, budget, method)
            ]
            heights.append(sum(times) / len(times) if times else 0.0)
        positions = [c + (i - (len(methods) - 1) / 2) * width for c in range(len(cells))]
        ax.bar(positions, heights, width, label=method)
    ax.set_xticks(range(len(cells)), [f"{t}\n{b:,}" for t, b in cells], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("training wall time (s)")
    ax.legend(fontsize=8)
    _save(figure, path)


def speed(rows: list[dict[str, Any]], path: Path) -> None:
    """Draws per second against theta dimension, one panel per batch of observations."""
    batches = sorted({r["num_observations"] for r in rows})
    methods = method_order([r["method"] for r in rows])
    figure = Figure(figsize=(3.4 * len(batches), 3.2))
    axes = figure.subplots(1, len(batches), squeeze=False)
    for ax, batch in zip(axes.flat, batches, strict=True):
        for method in methods:
            points = sorted(
                (r["theta_dim"], r["draws_per_second"])
                for r in rows
                if r["method"] == method and r["num_observations"] == batch
            )
            if points:
                ax.plot(*zip(*points, strict=True), label=method, **_style(method, methods))
        dims = sorted({r["theta_dim"] for r in rows})
        ax.set_xscale("log")
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_title(f"{batch} observation(s) per call")
        ax.set_xlabel("theta dimension")
        ax.set_ylabel("draws / s")
    _legend(figure, axes.flat)
    _save(figure, path, legend_space=0.2)

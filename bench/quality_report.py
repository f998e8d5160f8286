"""The quality report: a markdown table and PNG plots, rebuilt from every JSONL row."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import plots
from bench.baselines import BASELINES
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

METRIC_TEXT = {
    "sbibm": "`sbibm.metrics.c2st`",
    "fast": "the fast C2ST (`bench.c2st.fast_c2st`: sbibm's classifier, trained batched "
    "over folds on a fixed schedule; its agreement with sbibm's is in "
    "`docs/bench/c2st_agreement.md`)",
}


def metric(row: dict[str, Any]) -> str:
    """Which C2ST a row's ``c2st`` holds: ``fast`` (also with ``both``) or ``sbibm``.

    Rows from before the fast C2ST have no ``c2st_kind``: they hold sbibm's.
    """
    return "fast" if row.get("c2st_kind") in ("fast", "both") else "sbibm"


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


def _cpu_mean(rows: list[dict[str, Any]]) -> float | None:
    """Mean training CPU time, or None where a row (an older one) lacks it."""
    if not all("train_cpu_seconds" in r for r in rows):
        return None
    return _mean(rows, "train_cpu_seconds")


def _cost_cell(rows: list[dict[str, Any]]) -> str:
    """``wall s (cpu s) / epochs / draw-call s``; older rows lack the CPU time."""
    cpu = _cpu_mean(rows)
    train = f"{_mean(rows, 'train_seconds'):.0f} s"
    if cpu is not None:
        train += f" ({cpu:.0f} s CPU)"
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
        f"C2ST folds: {ordered([r['c2st_folds'] for r in rows])}; C2ST: "
        f"{ordered([r.get('c2st_kind', 'sbibm') for r in rows])}; "
        f"seeds: {ordered([r['seed'] for r in rows])}; processes side by side: "
        f"{ordered([r.get('jobs', 1) for r in rows])}",
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


def _scored(row: dict[str, Any]) -> tuple[list[int], list[float]]:
    return row["observations"], row["c2st"]


def _paired(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Per-observation C2ST differences ``a - b`` over the observations both scored."""
    scores_a = {(r["seed"], o): c for r in a for o, c in zip(*_scored(r), strict=True)}
    scores_b = {(r["seed"], o): c for r in b for o, c in zip(*_scored(r), strict=True)}
    common = sorted(set(scores_a) & set(scores_b))
    return [scores_a[k] - scores_b[k] for k in common], len(common)


def verdict(differences: list[float]) -> str:
    """``better``, ``worse`` or ``tie`` for paired C2ST differences (method - baseline).

    With one observation there is no spread to judge a difference by, and it says so.

    A tie is a mean difference within two standard errors of the per-observation
    differences (about a 95% interval): the observation-to-observation spread.
    """
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return "one observation: no spread"
    margin = 2 * statistics.stdev(differences) / len(differences) ** 0.5
    return "tie" if abs(mean) <= margin else "better" if mean < 0 else "worse"


def versus_table(rows: list[dict[str, Any]], method: str, baseline: str) -> list[str]:
    """Markdown lines: ``method`` against ``baseline`` per task and budget.

    C2ST of both, the paired difference with its two standard errors and the verdict;
    training wall time of both and their ratio; seconds per 10,000-draw call of both and
    the baseline's time over the method's (the method's sampling speed-up).
    """
    groups = _groups(rows)
    lines = []
    for task, budget in ordered([(r["task"], r["budget"]) for r in rows]):
        a, b = groups.get((task, budget, method)), groups.get((task, budget, baseline))
        if not a or not b:
            continue
        differences, n = _paired(a, b)
        if not n:
            continue
        margin = 2 * statistics.stdev(differences) / n**0.5 if n > 1 else float("nan")
        sbibm = "–"
        if all("c2st_sbibm_mean" in r for r in a + b):
            sbibm = f"{_mean(a, 'c2st_sbibm_mean'):.3f} / {_mean(b, 'c2st_sbibm_mean'):.3f}"
        train_a, train_b = _mean(a, "train_seconds"), _mean(b, "train_seconds")
        cpu_a, cpu_b = _cpu_mean(a), _cpu_mean(b)
        cpu = (
            "–"
            if cpu_a is None or cpu_b is None
            else f"{cpu_a:.0f} s / {cpu_b:.0f} s ({cpu_a / cpu_b:.2f}x)"
        )
        draw_a, draw_b = _mean(a, "sample_seconds_mean"), _mean(b, "sample_seconds_mean")
        lines.append(
            [
                task,
                f"{budget:,}",
                str(n),
                f"{_mean(a, 'c2st_mean'):.3f}",
                f"{_mean(b, 'c2st_mean'):.3f}",
                f"{statistics.fmean(differences):+.3f} ± {margin:.3f}",
                verdict(differences),
                sbibm,
                f"{train_a:.0f} s / {train_b:.0f} s ({train_a / train_b:.2f}x)",
                cpu,
                f"{draw_a:.3f} s / {draw_b:.3f} s ({draw_b / draw_a:.1f}x)",
            ]
        )
    return markdown_table(
        [
            "task",
            "budget",
            "obs",
            method,
            baseline,
            "difference ± 2 SE",
            "verdict",
            "sbibm C2ST (both)",
            "training (ratio)",
            "training CPU time (ratio)",
            "10,000 draws (speed-up)",
        ],
        lines,
    )


def _capped(row: dict[str, Any]) -> bool:
    """Whether a row's training ran into its wall-time cap (within 2%)."""
    cap = (row.get("caps") or {}).get("max_seconds")
    return cap is not None and cap > 0 and row["train_seconds"] >= 0.98 * cap


def families_table(
    rows: list[dict[str, Any]], budget: int, baseline: str = "npe_nsf", margin: float = 0.05
) -> list[str]:
    """Markdown lines: every method beside ``baseline`` per task at one budget.

    Cells: C2ST (difference to the baseline; training CPU seconds, ``cap`` where the
    wall-time cap ended it); best C2ST of each task in bold. Then the mean, how many
    tasks are within ``margin`` of the baseline (or better), the training CPU ratio to
    the baseline (range; tasks within 3x) and the range of seconds for one call drawing
    10,000 draws. Seeds are pooled (means).
    """
    groups = _groups([r for r in rows if r["budget"] == budget])
    methods = method_order([m for (_, _, m) in groups])
    if baseline not in methods:
        return []
    methods = [baseline] + [m for m in methods if m != baseline]
    tasks = ordered([t for (t, _, _) in groups])
    c2st = {k: _mean(v, "c2st_mean") for k, v in groups.items()}
    cpu = {k: _cpu_mean(v) or _mean(v, "train_seconds") for k, v in groups.items()}
    lines: list[list[str]] = []
    within: dict[str, int] = defaultdict(int)
    ratios: dict[str, list[float]] = defaultdict(list)
    draws: dict[str, list[float]] = defaultdict(list)
    for task in tasks:
        present = [m for m in methods if (task, budget, m) in groups]
        if baseline not in present:
            continue
        best = min(c2st[(task, budget, m)] for m in present)
        line = [task]
        for method in methods:
            key = (task, budget, method)
            if key not in groups:
                line.append("–")
                continue
            value, seconds = c2st[key], cpu[key]
            cap = ", cap" if any(_capped(r) for r in groups[key]) else ""
            draws[method].append(_mean(groups[key], "sample_seconds_mean"))
            text = f"{value:.3f}"
            if method == baseline:
                cell = f"{text} ({seconds:.0f} s)"
            else:
                difference = value - c2st[(task, budget, baseline)]
                within[method] += difference <= margin
                ratios[method].append(seconds / cpu[(task, budget, baseline)])
                cell = f"{text} ({difference:+.3f}; {seconds:.0f} s{cap})"
            line.append(cell.replace(text, f"**{text}**", 1) if value == best else cell)
        lines.append(line)
    if not lines:
        return []

    def summary(label: str, cell: Any) -> list[str]:
        return [label, *(cell(m) for m in methods)]

    def mean(m: str) -> str:
        values = [c2st[(t, budget, m)] for t in tasks if (t, budget, m) in groups]
        return f"{statistics.fmean(values):.3f}"

    def ratio(m: str) -> str:
        if m == baseline:
            return "–"
        low, high = min(ratios[m]), max(ratios[m])
        fast = sum(r <= 3 for r in ratios[m])
        return f"{low:.1f}-{high:.1f}× ({fast} of {len(ratios[m])} within 3×)"

    lines += [
        summary("mean", mean),
        summary(
            f"within {margin} of {baseline} (or better)",
            lambda m: "–" if m == baseline else f"{within[m]} of {len(ratios[m])}",
        ),
        summary(f"training CPU against {baseline}", ratio),
        summary(
            "10,000 draws",
            lambda m: f"{min(draws[m]):.2f}-{max(draws[m]):.2f} s",
        ),
    ]
    return markdown_table([f"task ({budget:,})", *methods], lines)


def _metric_section(rows: list[dict[str, Any]], kind: str, figures: Published) -> list[str]:
    """The C2ST table of the rows scored with one C2ST kind."""
    return [
        f"C2ST of each method's draws against sbibm's reference draws ({METRIC_TEXT[kind]}; "
        "0.5 = indistinguishable, 1.0 = disjoint; lower is better), mean over observations "
        "1..obs; ± is the spread over seeds. Best measured figure per row in bold. Every "
        "method in a row trained on the same simulations in the same run. Published "
        "columns come from other papers and machines: context, not part of the comparison.",
        "",
        *c2st_table(rows, figures),
        "",
    ]


def write(rows: list[dict[str, Any]], out: Path, figures: Published) -> None:
    """Writes ``quality.md`` and the two plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        return
    kinds = ordered([metric(r) for r in rows])
    sections: list[str] = []
    for kind in kinds:
        sections += _metric_section([r for r in rows if metric(r) == kind], kind, figures)
    methods = method_order([r["method"] for r in rows if r.get("error") is None])
    baselines = [m for m in methods if m == "npe_nsf"]
    if baselines and len(methods) > 2:  # several methods: all of them side by side
        for kind in kinds:
            kind_rows = [r for r in rows if metric(r) == kind]
            for budget in sorted({r["budget"] for r in kind_rows}):
                table = families_table(kind_rows, budget)
                if table:
                    sections += [
                        f"Every method beside `npe_nsf` at {budget:,} simulations ({kind} "
                        "C2ST; difference to `npe_nsf`; training CPU seconds, `cap` where "
                        "the wall-time cap ended training; best of each row in bold):",
                        "",
                        *table,
                        "",
                    ]
    for kind in kinds:
        kind_rows = [r for r in rows if metric(r) == kind]
        for baseline in baselines:
            for method in [m for m in methods if m not in BASELINES]:
                table = versus_table(kind_rows, method, baseline)
                if len(table) > 2:
                    sections += [
                        f"`{method}` against `{baseline}` ({kind} C2ST): paired per "
                        "observation; training wall time (ratio method / baseline) and "
                        "seconds for one call drawing 10,000 draws (speed-up baseline / "
                        "method).",
                        "",
                        *table,
                        "",
                    ]
    lines = [
        "# Posterior quality (generated by `python -m bench.quality`)",
        "",
        *(SMOKE_NOTE if any(r.get("smoke") for r in rows) else []),
        *sections,
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

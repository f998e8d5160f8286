"""Published sbibm C2ST figures, printed beside measured ones as context.

The figures live in the project's shared anchors file (one row per source, task, method
and budget). They were measured on other machines with other code, so they are never
mixed into the comparison itself.
"""

from __future__ import annotations

import csv
from pathlib import Path

# Published methods shown in the tables: column title -> method name in the file.
SHOWN: dict[str, str] = {
    "NPE (sbibm paper)": "NPE",
    "FMPE (published)": "FMPE",
    "energy-score generator (2022)": "EnergyScore_m20",
}

_CANDIDATES = (
    Path("shared/anchors/sbi_c2st_published.csv"),
    Path("../shared/anchors/sbi_c2st_published.csv"),
)

Published = dict[tuple[str, str, int], float]
"""``(task, method, budget) -> mean C2ST``."""


def default_path() -> Path | None:
    """The anchors file if one of the usual places (from the repo root) holds it."""
    return next((p for p in _CANDIDATES if p.exists()), None)


def load(path: Path | None) -> Published:
    """Reads the anchors CSV; ``None`` or a missing file gives no figures."""
    if path is None or not path.exists():
        return {}
    figures: Published = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["method"] in SHOWN.values() and row["c2st_mean"]:
                key = (row["task"], row["method"], int(float(row["budget"])))
                figures[key] = float(row["c2st_mean"])
    return figures

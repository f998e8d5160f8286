"""JSON-lines result files: append one row at a time, read them back, know what is done.

Appending row by row means a long run that is stopped keeps what it finished, and a
rerun (or several invocations splitting the work) skips the rows already present.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSON-lines file; an absent file has none. Blank lines are skipped."""
    if not path.exists():
        return []
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Appends ``row`` as one line and flushes it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def row_keys(rows: Iterable[dict[str, Any]], fields: tuple[str, ...]) -> set[tuple[Any, ...]]:
    """The set of ``fields`` tuples present in ``rows`` (what is already done)."""
    return {tuple(row[f] for f in fields) for row in rows}

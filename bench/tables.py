"""Small helpers the reports share: stable ordering and markdown tables."""

from __future__ import annotations

from typing import Any

from bench.baselines import BASELINES
from bench.methods import base_name


def ordered(values: list[Any]) -> list[Any]:
    """Unique values in order of first appearance."""
    return list(dict.fromkeys(values))


def method_order(methods: list[str]) -> list[str]:
    """Unique methods: sbiserve families (and their variants) first, sbi baselines last."""
    unique = ordered(methods)
    return sorted(unique, key=lambda m: (base_name(m) in BASELINES, unique.index(m)))


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    """A markdown table as a list of lines."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(line) + " |" for line in lines]

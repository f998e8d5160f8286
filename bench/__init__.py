"""Benchmark harness: posterior quality on sbibm tasks and sampling speed.

Run from the repository root: ``python -m bench.quality --help`` and
``python -m bench.speed --help``. Not an installed package.
"""

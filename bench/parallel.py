"""Running independent benchmark cells in parallel processes, one torch thread each.

A cell (one task, budget and method; or one pair of draw sets to score) is a picklable
function call. ``jobs=1`` runs the cells in this process, in order, which is what tests
and debugging want; ``jobs>1`` runs them in a pool of fresh (spawned) processes, each
limited to one intra-op thread so that ``jobs`` processes fill ``jobs`` cores without
oversubscribing them. Results come back as they finish, so the caller can append each
row to its results file at once.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def one_thread() -> None:
    """Limits this process to one torch (and BLAS) thread; the pool's initializer."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    import torch

    torch.set_num_threads(1)


def run_cells(function: Callable[[T], R], cells: Iterable[T], jobs: int) -> Iterator[tuple[T, R]]:
    """Yields ``(cell, function(cell))`` for every cell, in order of completion.

    Arguments:
        function: A module-level (picklable) function of one cell.
        cells: The cells, each picklable.
        jobs: Processes to run at once; 1 runs in this process.
    """
    todo = list(cells)
    if jobs <= 1:
        for cell in todo:
            yield cell, function(cell)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=one_thread
    ) as pool:
        futures: dict[concurrent.futures.Future[Any], T] = {
            pool.submit(function, cell): cell for cell in todo
        }
        for future in concurrent.futures.as_completed(futures):
            yield futures[future], future.result()

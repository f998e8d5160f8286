"""Keeps glibc's malloc from handing large blocks back to the system after every pass.

torch's CPU tensors come from ``malloc``. glibc serves a block above its *mmap threshold*
(128 KiB at start, raised adaptively) with a fresh ``mmap`` and unmaps it on ``free``,
and it returns the top of the heap to the system once more than the *trim threshold*
is free there. A forward pass of 10,000 draws allocates activations of a few MiB each,
so depending on what the process did before, every pass may map and zero fresh pages:
10,000 draws of a 3 x 48 energy flow took 6.8-11.7 ms with 137,000-350,000 minor page
faults per 100 calls, and 4.6-5.1 ms with 0-4,700 once both thresholds were fixed high
(one thread, a 2-core AMD EPYC VM; ``docs/SERVING.md``). A training step of the same
network was 5-10% faster.

Written by hand because no library sets these: the setting is two ``mallopt`` calls
through ``ctypes``. It is process-wide; the worker calls :func:`tune_malloc` when it
starts, and a library user sampling many draws in-process may call it too. Memory the
process freed stays mapped up to :data:`TRIM_THRESHOLD_BYTES` instead of going back to
the system at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, not from a fresh mmap each: glibc's upper
# bound for the threshold on 64-bit systems (a larger value is refused).
MMAP_THRESHOLD_BYTES = 32 * 2**20
# Free memory at the top of the heap kept for the next pass instead of returned.
TRIM_THRESHOLD_BYTES = 128 * 2**20


def tune_malloc() -> bool:
    """Fixes glibc's mmap and trim thresholds high (see the module docstring).

    Returns:
        Whether both settings took: false off Linux or with a C library without
        ``mallopt`` (musl accepts the call and ignores it, and says so), in which case
        nothing changed.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )

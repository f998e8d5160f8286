"""Suite-wide setup: one math thread per process.

The networks in the tests are tiny and the suite runs on two cores beside a worker
process; there, one thread per process is many times faster than several threads
fighting over the cores (seen: a contract test 11.5 s with two threads, 0.5 s with one).
Set before torch is imported, so worker subprocesses inherit it too.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

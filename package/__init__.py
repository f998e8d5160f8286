"""sbiserve: a posterior-estimation service for simulation-based inference.

The installed package exposes three parts, each a top-level folder of the repository:

- :mod:`sbiserve.models`: conditional posterior estimators ``q(theta | x)`` in pure PyTorch;
- :mod:`sbiserve.service`: the HTTP API, Redis queue, worker and stores;
- :mod:`sbiserve.client`: a thin Python client (httpx and numpy only).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sbiserve")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

"""Where and with what a benchmark ran: machine, device, package versions, git commit."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch

_PACKAGES = ("torch", "sbi", "sbiserve", "sbibm", "zuko")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or what platform knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def device_name(device: torch.device) -> str:
    """``cpu`` or ``cuda:N (GPU name)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def models_digest(folder: Path) -> str:
    """Short SHA-256 of every ``*.py`` file under ``folder``: the model code a result used.

    The commit alone does not say it when the working tree has uncommitted changes.
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


# What a benchmark row's figures can depend on, relative to the repository root.
CODE_PATHS = ("models", "service", "client", "bench", "pyproject.toml")


def git_commit() -> dict[str, Any]:
    """The checked-out commit, whether tracked code differs from it, the models' digest.

    ``dirty`` looks at the code a row can depend on (:data:`CODE_PATHS`), not at the
    documentation a long run's report is written into while it runs.
    """
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "-uno", "--porcelain", "--", *CODE_PATHS)),
        "models_digest": models_digest(root / "models"),
    }


@cache
def environment(device: torch.device) -> dict[str, Any]:
    """Everything a row records about its environment, computed once per run."""
    return {
        "device": device_name(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
        "git": git_commit(),
    }

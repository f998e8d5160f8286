"""Saving and loading estimators without pickle: safetensors weights + a JSON manifest.

A saved estimator is a directory with two files:

- ``weights.safetensors``: every parameter and buffer, standardization and prior bounds
  included (safetensors holds raw tensors only, so loading runs no code);
- ``manifest.json``: family, dimensions, configuration, prior, normalization statistics,
  package versions, the weights' SHA-256 and any training metrics.

Loading rebuilds the estimator from the manifest, checks the weights' hash, and loads
the tensors strictly (a missing or extra tensor is an error).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .base import PosteriorEstimator
from .errors import ConfigError, ManifestError
from .registry import build_estimator, get_family

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT = "sbiserve-estimator"
FORMAT_VERSION = 1

# Options added to a family after models were saved with it: a manifest without one was
# trained with the behaviour it had before, which is not always today's default.
LEGACY_OPTIONS: dict[str, Any] = {
    "spread_weighting": False,
    "noise": "gaussian",
    "bounded_map": "logit",
    "fold_penalty": 0.0,
    "mixture_heads": 1,
    "marginal_weight": 0.0,
    "sign_noise": 0,
    "coordinate_scaling": False,
}


def _config_as_saved(family: str, config: dict[str, Any]) -> dict[str, Any]:
    """The manifest's configuration with :data:`LEGACY_OPTIONS` filled in where absent."""
    try:
        fields = get_family(family).config_class.field_names()
    except ConfigError:
        return config  # an unknown family: build_estimator names it
    legacy = {k: v for k, v in LEGACY_OPTIONS.items() if k in fields}
    return {**legacy, **config}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sbiserve")
    except PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(estimator: PosteriorEstimator, weights_sha256: str) -> dict[str, Any]:
    """The manifest of ``estimator`` (without metrics)."""
    theta_std = estimator.theta_transform.standardize
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": estimator.family,
        "log_prob_kind": estimator.log_prob_kind,
        "theta_dim": estimator.theta_dim,
        "x_dim": estimator.x_dim,
        "config": estimator.config.to_dict(),
        "prior": estimator.prior.to_dict(),
        "normalization": {
            "theta_unconstrained_mean": theta_std.mean.tolist(),
            "theta_unconstrained_std": theta_std.std.tolist(),
            "x_mean": estimator.x_standardize.mean.tolist(),
            "x_std": estimator.x_standardize.std.tolist(),
        },
        "versions": {"sbiserve": _version(), "torch": torch.__version__},
        "weights_sha256": weights_sha256,
    }


def save_estimator(
    estimator: PosteriorEstimator,
    directory: str | os.PathLike[str],
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``estimator`` to ``directory`` (created if needed) and returns the manifest.

    Each file is written to a temporary name and renamed, so a reader never sees half a
    file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    # save_model (not save_file) handles tensors that share memory.
    safetensors.torch.save_model(estimator, tmp)
    os.replace(tmp, directory / WEIGHTS)
    manifest = build_manifest(estimator, sha256_file(directory / WEIGHTS))
    manifest["metrics"] = metrics or {}
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, allow_nan=True)
    os.replace(tmp, directory / MANIFEST)
    return manifest


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and checks a saved estimator's manifest."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST} in {directory}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ManifestError(f"{path} is not an sbiserve estimator manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format_version {manifest.get('format_version')}, "
            f"this sbiserve reads {FORMAT_VERSION}"
        )
    return manifest


def load_estimator(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> PosteriorEstimator:
    """Loads an estimator saved by :func:`save_estimator`, in eval mode on ``device``.

    Raises:
        ManifestError: When a file is missing, the hash does not match or the tensors do
            not fit the manifest's family and configuration.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise ManifestError(f"no {WEIGHTS} in {directory}")
    if sha256_file(weights) != manifest.get("weights_sha256"):
        raise ManifestError(f"{weights} does not match the SHA-256 in its manifest")
    try:
        estimator = build_estimator(
            manifest["family"],
            int(manifest["theta_dim"]),
            int(manifest["x_dim"]),
            _config_as_saved(manifest["family"], manifest["config"]),
            manifest["prior"],
        )
    except KeyError as e:
        raise ManifestError(f"the manifest in {directory} lacks {e.args[0]!r}") from None
    except ConfigError as e:
        raise ManifestError(f"the manifest in {directory} is not valid: {e}") from None
    try:
        safetensors.torch.load_model(estimator, weights, strict=True, device=str(device))
    except (RuntimeError, safetensors.SafetensorError) as e:
        raise ManifestError(f"the weights in {directory} do not fit the manifest: {e}") from None
    return estimator.to(device).eval()

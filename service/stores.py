"""The dataset store and the model registry: content-addressed directories on disk.

Layout under ``data_dir``::

    datasets/<id>/theta.npy, x.npy, meta.json     id = first 24 hex of the content SHA-256
    models/<id>/manifest.json, weights.safetensors, metadata.json
    aliases/<alias>                               a file holding a model id
    tmp/                                          staging; renamed into place when complete

Every write goes to ``tmp/`` first and is renamed into place, so a reader never sees a
half-written entry and a crash leaves nothing but staging debris. Hashes are checked
when data is loaded. No pickle anywhere: arrays are ``.npy`` read with
``allow_pickle=False``, weights are safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from sbiserve.models import PosteriorEstimator, load_estimator, save_estimator

from .errors import InvalidInput, NotFound, ServiceError

ID_LENGTH = 24
ID_PATTERN = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")
ALIAS_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


class CorruptedEntry(ServiceError):
    """A stored entry no longer matches its hash."""

    status = 500
    code = "corrupted"


def _atomic_write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def array_digest(theta: np.ndarray, x: np.ndarray) -> str:
    """SHA-256 over the shapes, dtypes and bytes of both arrays (the dataset's identity)."""
    digest = hashlib.sha256()
    for name, array in (("theta", theta), ("x", x)):
        header = f"{name}:{array.dtype.str}:{list(array.shape)};".encode()
        digest.update(header)
        digest.update(np.ascontiguousarray(array).data)  # a view of the bytes, no copy
    return digest.hexdigest()


class _Store:
    """Shared directory handling of both stores."""

    kind = "entry"

    def __init__(self, root: Path, folder: str) -> None:
        self.root = Path(root)
        self.dir = self.root / folder
        self.tmp = self.root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def staging(self) -> Path:
        """A fresh empty staging directory."""
        path = self.tmp / uuid.uuid4().hex
        path.mkdir()
        return path

    def path(self, entry_id: str) -> Path:
        """The directory of an entry, or :class:`NotFound`."""
        if not ID_PATTERN.fullmatch(entry_id or ""):
            raise NotFound(f"unknown {self.kind} {entry_id!r}", f"{self.kind}_id")
        path = self.dir / entry_id
        if not (path / "meta.json").is_file() and not (path / "metadata.json").is_file():
            raise NotFound(f"unknown {self.kind} {entry_id!r}", f"{self.kind}_id")
        return path

    def commit(self, staging: Path, entry_id: str) -> bool:
        """Renames a staging directory into place; False if the entry already existed."""
        target = self.dir / entry_id
        try:
            os.rename(staging, target)
        except OSError:
            if target.is_dir():
                shutil.rmtree(staging, ignore_errors=True)
                return False
            raise
        return True

    def remove(self, entry_id: str) -> None:
        """Deletes an entry: first renamed out of sight, then removed."""
        path = self.path(entry_id)
        trash = self.tmp / f"deleted-{entry_id}-{uuid.uuid4().hex}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def ids(self) -> list[str]:
        """Ids of every stored entry, oldest first."""
        entries = [p for p in self.dir.iterdir() if p.is_dir() and len(p.name) == ID_LENGTH]
        return [p.name for p in sorted(entries, key=lambda p: p.stat().st_mtime)]


class DatasetStore(_Store):
    """Simulations ``(theta, x)`` stored as two ``.npy`` files and a ``meta.json``."""

    kind = "dataset"

    def __init__(self, root: Path) -> None:
        super().__init__(root, "datasets")

    def put(
        self,
        theta: np.ndarray,
        x: np.ndarray,
        name: str | None = None,
        names: dict[str, list[str]] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Stores checked float32 arrays; returns the metadata and whether it was new.

        ``names`` (``theta_names``, ``x_names``) are labels, not content: sent again with
        the same data they replace the stored ones.
        """
        names = {k: v for k, v in (names or {}).items() if v is not None}
        if theta.shape[0] != x.shape[0]:
            raise InvalidInput(
                f"theta and x must have the same number of rows, got {theta.shape[0]} and "
                f"{x.shape[0]}",
                "x",
            )
        sha = array_digest(theta, x)
        dataset_id = sha[:ID_LENGTH]
        if (self.dir / dataset_id / "meta.json").is_file():
            meta = self.get(dataset_id)
            if any(meta.get(k) != v for k, v in names.items()):
                _atomic_write_json(self.dir / dataset_id / "meta.json", {**meta, **names})
            return self.get(dataset_id), False
        staging = self.staging()
        np.save(staging / "theta.npy", theta, allow_pickle=False)
        np.save(staging / "x.npy", x, allow_pickle=False)
        meta = {
            "dataset_id": dataset_id,
            "sha256": sha,
            "num_simulations": int(theta.shape[0]),
            "theta_dim": int(theta.shape[1]),
            "x_dim": int(x.shape[1]),
            "name": name,
            "created_at": time.time(),
            "size_bytes": int(theta.nbytes + x.nbytes),
            "theta_min": theta.min(axis=0).astype(float).tolist(),
            "theta_max": theta.max(axis=0).astype(float).tolist(),
            **names,
        }
        _atomic_write_json(staging / "meta.json", meta)
        created = self.commit(staging, dataset_id)
        return self.get(dataset_id), created

    def get(self, dataset_id: str) -> dict[str, Any]:
        """Metadata of a dataset."""
        meta: dict[str, Any] = json.loads((self.path(dataset_id) / "meta.json").read_text())
        return meta

    def load(self, dataset_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Both arrays, verified against the stored hash."""
        path = self.path(dataset_id)
        meta = self.get(dataset_id)
        theta = np.load(path / "theta.npy", allow_pickle=False)
        x = np.load(path / "x.npy", allow_pickle=False)
        if array_digest(theta, x) != meta["sha256"]:
            raise CorruptedEntry(f"dataset {dataset_id} does not match its SHA-256 on disk")
        return theta, x

    def list(self) -> list[dict[str, Any]]:
        """Metadata of every dataset, oldest first."""
        out = []
        for dataset_id in self.ids():
            try:
                out.append(self.get(dataset_id))
            except (NotFound, OSError, json.JSONDecodeError):
                continue  # deleted meanwhile
        return out


class ModelStore(_Store):
    """Trained estimators (safetensors + manifest) with their training metadata."""

    kind = "model"

    def __init__(self, root: Path) -> None:
        super().__init__(root, "models")
        self.aliases_dir = self.root / "aliases"
        self.aliases_dir.mkdir(parents=True, exist_ok=True)

    def stage(self, estimator: PosteriorEstimator, metrics: dict[str, Any]) -> tuple[Path, str]:
        """Writes an estimator to staging; returns the directory and its content id."""
        staging = self.staging()
        save_estimator(estimator, staging, metrics=metrics)
        digest = hashlib.sha256((staging / "manifest.json").read_bytes()).hexdigest()
        return staging, digest[:ID_LENGTH]

    def publish(self, staging: Path, model_id: str, metadata: dict[str, Any]) -> None:
        """Adds the metadata and renames the staged model into the registry."""
        metadata = {**metadata, "model_id": model_id}
        _atomic_write_json(staging / "metadata.json", metadata)
        self.commit(staging, model_id)

    def exists(self, model_id: str) -> bool:
        """Whether a model with this id is published."""
        return (self.dir / model_id / "metadata.json").is_file()

    def get(self, model_id: str) -> dict[str, Any]:
        """Metadata of a published model (with its current aliases)."""
        meta: dict[str, Any] = json.loads((self.path(model_id) / "metadata.json").read_text())
        meta["aliases"] = sorted(a for a, target in self.aliases().items() if target == model_id)
        return meta

    def load(self, model_id: str, device: str = "cpu") -> PosteriorEstimator:
        """The estimator, its weights verified against the manifest's SHA-256."""
        return load_estimator(self.path(model_id), device=device)

    def list(self) -> list[dict[str, Any]]:
        """Metadata of every model, oldest first."""
        out = []
        for model_id in self.ids():
            try:
                out.append(self.get(model_id))
            except (NotFound, OSError, json.JSONDecodeError):
                continue
        return out

    def delete(self, model_id: str) -> None:
        """Deletes a model and every alias pointing at it."""
        self.remove(model_id)
        for alias, target in self.aliases().items():
            if target == model_id:
                (self.aliases_dir / alias).unlink(missing_ok=True)

    # ------------------------------------------------------------------ aliases
    def aliases(self) -> dict[str, str]:
        """Every alias and the model id it points at."""
        out = {}
        for path in self.aliases_dir.iterdir():
            if path.is_file() and not path.name.startswith("."):
                out[path.name] = path.read_text().strip()
        return out

    def set_alias(self, alias: str, model_id: str) -> None:
        """Points ``alias`` at a published model (atomically replacing an old target)."""
        if not ALIAS_PATTERN.fullmatch(alias) or ID_PATTERN.fullmatch(alias):
            raise InvalidInput(
                f"alias {alias!r} must be 1-100 characters of letters, digits, '.', '_', ':' "
                f"or '-', start with a letter or digit, and not look like a model id",
                "alias",
            )
        self.path(model_id)
        tmp = self.aliases_dir / f".{alias}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(model_id)
        os.replace(tmp, self.aliases_dir / alias)

    def remove_alias(self, alias: str, model_id: str) -> None:
        """Removes ``alias`` if it points at ``model_id``; otherwise :class:`NotFound`."""
        if self.aliases().get(alias) != model_id:
            raise NotFound(f"model {model_id} has no alias {alias!r}", "alias")
        (self.aliases_dir / alias).unlink(missing_ok=True)

    def resolve(self, ref: str) -> str:
        """A model id from an id or an alias, or :class:`NotFound`."""
        if ID_PATTERN.fullmatch(ref) and self.exists(ref):
            return ref
        if ALIAS_PATTERN.fullmatch(ref):
            path = self.aliases_dir / ref
            if path.is_file():
                target = path.read_text().strip()
                if self.exists(target):
                    return target
        raise NotFound(f"unknown model {ref!r} (neither a model id nor an alias)", "model")

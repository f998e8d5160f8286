"""Reading user arrays safely: ``.npy``/``.npz`` without pickle, JSON lists, checks.

Every function raises :class:`~sbiserve.service.errors.BadRequest` for bytes that are
not what they claim to be and :class:`~sbiserve.service.errors.InvalidInput` for arrays
of the wrong shape, kind or with non-finite values, naming the field.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, Any

import numpy as np

from .errors import BadRequest, InvalidInput

NPY_MEDIA_TYPE = "application/x-npy"


def load_npy(source: IO[bytes], field: str) -> np.ndarray:
    """Reads one ``.npy`` array without ever unpickling (object arrays are refused)."""
    try:
        array = np.load(source, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise BadRequest(
                f"{field} holds Python objects (a pickled array); only numeric arrays are accepted",
                field,
            ) from None
        raise BadRequest(f"{field} is not a valid .npy file: {e}", field) from None
    except (OSError, EOFError) as e:
        raise BadRequest(f"{field} is not a valid .npy file: {e}", field) from None
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise BadRequest(f"{field} is an .npz archive; send it as the `file` field", field)
    return array


def load_npz(source: IO[bytes], field: str = "file") -> dict[str, np.ndarray]:
    """Reads ``theta`` and ``x`` from an ``.npz`` archive without unpickling."""
    try:
        archive = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise BadRequest(f"{field} is not a valid .npz archive: {e}", field) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise BadRequest(f"{field} is a single .npy array, not an .npz archive", field)
    with archive:
        missing = [name for name in ("theta", "x") if name not in archive.files]
        if missing:
            raise InvalidInput(
                f"{field} must hold arrays named 'theta' and 'x'; missing {missing}, "
                f"found {archive.files}",
                field,
            )
        out = {}
        for name in ("theta", "x"):
            try:
                out[name] = archive[name]
            except ValueError:
                raise BadRequest(
                    f"{field}:{name} holds Python objects (pickle); only numeric arrays "
                    "are accepted",
                    f"{field}:{name}",
                ) from None
        return out


def from_json(value: Any, field: str) -> np.ndarray:
    """Converts a JSON number list (nested) into a float64 array."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{field} must be a (nested) list of numbers with equal-length rows", field
        ) from None
    return array


def as_matrix(array: np.ndarray, field: str, columns: int | None = None) -> np.ndarray:
    """Checks a numeric 1-D/2-D array; returns it as a float32 ``(N, F)`` matrix.

    A 1-D array is read as ``N`` rows of one feature.
    """
    if array.dtype.kind not in "biuf":
        raise InvalidInput(
            f"{field} must hold numbers (bool, int or float), got dtype {array.dtype}", field
        )
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InvalidInput(
            f"{field} must be 2-D (rows, features), got shape {list(array.shape)}", field
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInput(f"{field} is empty (shape {list(array.shape)})", field)
    if columns is not None and array.shape[1] != columns:
        raise InvalidInput(f"{field} must have {columns} column(s), got {array.shape[1]}", field)
    array = array.astype(np.float32, copy=False)
    check_finite(array, field)
    return np.ascontiguousarray(array)


def check_finite(array: np.ndarray, field: str) -> None:
    """Raises InvalidInput naming the first NaN/inf (row, column)."""
    bad = ~np.isfinite(array)
    if bad.any():
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInput(
            f"{field} contains {int(bad.sum())} NaN/inf value(s); the first at index {where}",
            field,
        )


def to_npy_bytes(array: np.ndarray) -> bytes:
    """Serializes an array as ``.npy`` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()

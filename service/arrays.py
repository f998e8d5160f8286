"""Reading user arrays safely: ``.npy``/``.npz`` without pickle, JSON lists, checks.

Every function raises :class:`~sbiserve.service.errors.BadRequest` for bytes that are
not what they claim to be and :class:`~sbiserve.service.errors.InvalidInput` for arrays
of the wrong shape, kind or with non-finite values, naming the field.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import orjson

from .errors import BadRequest, InvalidInput, PayloadTooLarge

NPY_MEDIA_TYPE = "application/x-npy"
NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's own default limit on a header's length
READ_CHUNK = 16 * 2**20
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)


@dataclass
class DecodeLimits:
    """What one upload may hold once decoded: bytes of all its arrays together, and rows.

    Each array's declared shape is checked against them before anything is allocated.
    """

    max_bytes: int
    max_rows: int
    used_bytes: int = 0

    def claim(self, field: str, shape: tuple[int, ...], nbytes: int) -> None:
        """Counts an array about to be read, or raises :class:`PayloadTooLarge`."""
        rows = shape[0] if shape else 1
        if rows > self.max_rows:
            raise PayloadTooLarge(
                f"{field} declares {rows} rows (shape {list(shape)}), over the limit of "
                f"{self.max_rows} rows per dataset",
                field,
            )
        if self.used_bytes + nbytes > self.max_bytes:
            raise PayloadTooLarge(
                f"{field} declares shape {list(shape)}, {nbytes} bytes once decoded; the "
                f"upload's arrays may hold at most {self.max_bytes} bytes together",
                field,
            )
        self.used_bytes += nbytes


def _read(source: IO[bytes], count: int, field: str) -> bytes:
    data = source.read(count)
    if len(data) != count:
        raise BadRequest(f"{field} is not a valid .npy file: it ends inside its header", field)
    return data


def _remaining(source: IO[bytes]) -> int | None:
    """Bytes left in a seekable file from its position, or None."""
    try:
        position = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(position)
    except (OSError, AttributeError, ValueError):
        return None
    return end - position


def read_npy_header(source: IO[bytes], field: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and length in bytes of a ``.npy`` header.

    Reads only the header: nothing the header declares is allocated here.
    """
    magic = _read(source, 8, field)
    if not magic.startswith(NPY_MAGIC):
        if magic.startswith(b"PK"):
            raise BadRequest(f"{field} is an .npz archive; send it as the `file` field", field)
        raise BadRequest(
            f"{field} is not a .npy file (no .npy magic; pickled data is never accepted)", field
        )
    major = magic[6]
    if major not in (1, 2):
        raise BadRequest(f"{field} is a .npy file of version {major}; write it with np.save", field)
    size_bytes = _read(source, 2 if major == 1 else 4, field)
    length = int.from_bytes(size_bytes, "little")
    if length > MAX_HEADER_BYTES:
        raise BadRequest(f"{field} has a .npy header of {length} bytes; too long", field)
    header = io.BytesIO(size_bytes + _read(source, length, field))
    reader = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    try:
        shape, fortran, dtype = reader(header)
    except (ValueError, SyntaxError, TypeError) as e:
        raise BadRequest(f"{field} is not a valid .npy file: {e}", field) from None
    return tuple(shape), bool(fortran), dtype, 8 + len(size_bytes) + length


def load_npy(
    source: IO[bytes],
    field: str,
    limits: DecodeLimits | None = None,
    size: int | None = None,
) -> np.ndarray:
    """Reads one ``.npy`` array without ever unpickling (object arrays are refused).

    Arguments:
        source: The bytes, at the start of the array.
        field: Named in errors.
        limits: Checked against the declared shape before anything is allocated
            (:class:`PayloadTooLarge`); None for the service's own trusted bytes.
        size: Bytes the source holds (default: measured when it is seekable); a header
            declaring more data than that is refused before allocating.
    """
    available = size if size is not None else _remaining(source)
    shape, fortran, dtype, header_bytes = read_npy_header(source, field)
    if dtype.hasobject:
        raise BadRequest(
            f"{field} holds Python objects (a pickled array); only numeric arrays are accepted",
            field,
        )
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if limits is not None:
        limits.claim(field, shape, nbytes)
    if available is not None and nbytes > available - header_bytes:
        raise BadRequest(
            f"{field} declares shape {list(shape)} ({nbytes} bytes) but holds only "
            f"{max(available - header_bytes, 0)} bytes of data",
            field,
        )
    array = np.empty(count, dtype=dtype)
    done = 0
    while done < nbytes:  # in chunks: never more in memory than the declared array
        chunk = source.read(min(READ_CHUNK, nbytes - done))
        if not chunk:
            raise BadRequest(f"{field} ends after {done} of its {nbytes} data bytes", field)
        array.view(np.uint8)[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        done += len(chunk)
    return array.reshape(shape, order="F" if fortran else "C")


def load_npz(
    source: IO[bytes], field: str = "file", limits: DecodeLimits | None = None
) -> dict[str, np.ndarray]:
    """Reads ``theta`` and ``x`` from an ``.npz`` archive without unpickling.

    Each member's header is checked against ``limits`` before it is decompressed, and no
    more is decompressed than the header declares: a zip bomb costs nothing.
    """
    head = source.read(len(NPY_MAGIC))
    source.seek(0)
    if head == NPY_MAGIC:
        raise BadRequest(f"{field} is a single .npy array, not an .npz archive", field)
    try:
        archive = zipfile.ZipFile(source)
    except (*ZIP_ERRORS, ValueError) as e:
        raise BadRequest(f"{field} is not a valid .npz archive: {e}", field) from None
    with archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        missing = [name for name in ("theta", "x") if name not in members]
        if missing:
            raise InvalidInput(
                f"{field} must hold arrays named 'theta' and 'x'; missing {missing}, "
                f"found {sorted(members)}",
                field,
            )
        out = {}
        for name in ("theta", "x"):
            info = members[name]
            try:
                with archive.open(info) as member:
                    out[name] = load_npy(member, f"{field}:{name}", limits, info.file_size)
            except ZIP_ERRORS as e:
                raise BadRequest(f"{field}:{name} cannot be decompressed: {e}", field) from None
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
    check_finite(array, field)
    with np.errstate(over="ignore"):
        array = array.astype(np.float32, copy=False)
    check_finite(array, field, "value(s) beyond float32's range (about ±3.4e38)")
    return np.ascontiguousarray(array)


def check_finite(array: np.ndarray, field: str, what: str = "NaN/inf value(s)") -> None:
    """Raises InvalidInput naming the first non-finite value's (row, column)."""
    bad = ~np.isfinite(array)
    if bad.any():
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInput(
            f"{field} contains {int(bad.sum())} {what}; the first at index {where}", field
        )


def npy_header(shape: tuple[int, ...], descr: str) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-ordered array: followed by the array's raw
    bytes, it is the file ``np.save`` writes, without copying the data through numpy."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    # Magic (6), version (2), length (2), then the text padded to a multiple of 64 bytes.
    padded = len(text) + 1 + (-(10 + len(text) + 1) % 64)
    header = text.ljust(padded - 1) + "\n"
    return NPY_MAGIC + b"\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")


def to_npy_bytes(array: np.ndarray) -> bytes:
    """Serializes an array as ``.npy`` bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def json_bytes(data: Any) -> bytes:
    """Compact JSON through orjson, which writes numpy arrays natively (no ``tolist``).

    Pass float64 arrays where the numbers must read back as the same doubles as before:
    orjson writes a float32 in its own shortest form (``0.1`` for ``0.100000001``).
    """
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)

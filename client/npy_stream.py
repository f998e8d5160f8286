"""A 2-D array read as a ``.npy`` file, produced a few rows at a time.

:class:`NpyStream` lets httpx stream a large upload without ever holding a second copy
of the array: each ``read`` converts only the rows it needs to little-endian float32 (the
server's storage type, half the bytes of float64). It works on any 2-D array, including
a memory-mapped one (``np.load(path, mmap_mode="r")``), so uploads far larger than memory
stay flat.
"""

from __future__ import annotations

import io
import os

import numpy as np

DTYPE = np.dtype("<f4")


def npy_header(shape: tuple[int, int]) -> bytes:
    """The ``.npy`` (format 1.0) header of a C-ordered float32 array of ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer,
        {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": shape},
    )
    return buffer.getvalue()


class NpyStream(io.RawIOBase):
    """A read-only, seekable file whose bytes are ``array`` saved as float32 ``.npy``.

    Arguments:
        array: A 2-D numeric array ``(rows, features)``.
    """

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        if array.ndim != 2:
            raise ValueError(f"NpyStream needs a 2-D array, got shape {array.shape}")
        self.array = array
        self.header = npy_header((int(array.shape[0]), int(array.shape[1])))
        self.row_bytes = int(array.shape[1]) * DTYPE.itemsize
        self.size = len(self.header) + int(array.shape[0]) * self.row_bytes
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._bytes(self.position, len(view))
        view[: len(data)] = data
        self.position += len(data)
        return len(data)

    def _bytes(self, start: int, count: int) -> bytes:
        """Up to ``count`` bytes from offset ``start``."""
        end = min(self.size, start + count)
        if start >= end:
            return b""
        head = len(self.header)
        out = self.header[start:end] if start < head else b""
        if end > head:
            first = max(start, head) - head  # offsets inside the data section
            last = end - head
            row0, row1 = first // self.row_bytes, -(-last // self.row_bytes)
            rows = np.ascontiguousarray(self.array[row0:row1], dtype=DTYPE).tobytes()
            skip = first - row0 * self.row_bytes
            out += rows[skip : skip + last - first]
        return out

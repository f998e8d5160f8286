"""Arrays in and out: numpy always, torch tensors when the caller uses them.

torch is never imported here at module level: a tensor is recognized by its type's
module, and torch is imported only to build an answer for a caller who passed tensors
(so torch is already loaded) or asked for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidInputError


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch)."""
    return type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "detach")


def to_numpy(value: Any, field: str) -> np.ndarray:
    """A numeric numpy view or copy of an array-like or tensor (bool, int or float).

    Raises:
        InvalidInputError: For non-numeric content, naming ``field``.
    """
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise InvalidInputError(f"{field} is not an array of numbers: {e}", field=field) from None
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{field} must hold numbers (bool, int or float), got dtype {array.dtype}", field=field
        )
    return array


def as_rows(value: Any, field: str) -> np.ndarray:
    """``value`` as a 2-D ``(rows, features)`` array; a 1-D array is rows of one feature."""
    array = to_numpy(value, field)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidInputError(
            f"{field} must be a non-empty 2-D array (rows, features), got shape "
            f"{list(array.shape)}",
            field=field,
        )
    return array


def check_finite(array: np.ndarray, field: str) -> None:
    """Raises :class:`InvalidInputError` naming the first NaN/inf of a (small) array."""
    bad = ~np.isfinite(array)
    if bad.any():
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise InvalidInputError(
            f"{field} contains {int(bad.sum())} NaN/inf value(s), the first at index {where}",
            field=field,
        )


def to_torch(array: np.ndarray, like: Any = None) -> Any:
    """A torch tensor of ``array`` (float32), on ``like``'s device when ``like`` is a tensor."""
    import torch

    device = like.device if is_tensor(like) else None
    return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)

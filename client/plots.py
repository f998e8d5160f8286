"""Pictures from the service: model plots and posterior pair plots, saved or shown.

The server draws them (``GET /v1/models/{ref}/plots/{name}.png``, ``POST
/v1/posterior/plot``); the client only fetches PNG bytes, writes them to a file, or shows
them with matplotlib when asked (matplotlib is needed for that only).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .arrays import to_numpy
from .errors import InvalidInputError
from .transport import Transport

MODEL_PLOTS = ("training", "sbc", "coverage")
PLOTS = (*MODEL_PLOTS, "posterior")


def fetch_plot(
    transport: Transport,
    model: str,
    name: str,
    *,
    x: Any = None,
    theta: Any = None,
    num_samples: int = 5000,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> bytes:
    """PNG bytes of plot ``name`` of ``model`` (``posterior`` needs one observation ``x``)."""
    if name not in PLOTS:
        raise InvalidInputError(f"unknown plot {name!r}: one of {', '.join(PLOTS)}", field="name")
    size = {k: v for k, v in (("width", width), ("height", height)) if v is not None}
    if name != "posterior":
        if x is not None:
            raise InvalidInputError(f"the {name} plot takes no x (the posterior plot does)", "x")
        path = f"/v1/models/{quote(model, safe=':@')}/plots/{name}.png"
        return transport.request("GET", path, params=size).content
    if x is None:
        raise InvalidInputError("the posterior plot needs one observation x", field="x")
    body: dict[str, Any] = {
        "model": model,
        "x": to_numpy(x, "x").astype(float).reshape(-1).tolist(),
        "num_samples": num_samples,
        "seed": seed,
        **size,
    }
    if theta is not None:
        body["theta"] = to_numpy(theta, "theta").astype(float).reshape(-1).tolist()
    return transport.request("POST", "/v1/posterior/plot", json=body).content


def save_or_show(png: bytes, path: str | os.PathLike[str] | None, show: bool) -> None:
    """Writes ``png`` to ``path`` (if given) and shows it in a matplotlib window if asked."""
    if path is not None:
        Path(path).write_bytes(png)
    if show:
        try:
            import matplotlib.image as mpimg
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("showing a plot needs matplotlib (pip install matplotlib)") from None
        image = mpimg.imread(io.BytesIO(png), format="png")
        height, width = image.shape[:2]
        figure = plt.figure(figsize=(width / 100, height / 100), dpi=100)
        axes = figure.add_axes((0, 0, 1, 1))
        axes.imshow(image)
        axes.set_axis_off()
        plt.show()

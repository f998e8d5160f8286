"""Server-sent events of a training job, and the progress bar they feed.

``GET /v1/jobs/{id}/events`` streams ``event: progress`` with
``{epoch, max_epochs, train_loss, val_loss}`` after each epoch, then one
``event: status`` with ``{status, model_id | error}``; past events are replayed first, so
a client that reconnects sees the whole history again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm


@dataclass(frozen=True)
class Event:
    """One server-sent event: its type (``progress``, ``status``) and decoded JSON data."""

    kind: str
    data: dict[str, Any]


def parse_events(lines: Iterable[str]) -> Iterator[Event]:
    """Events from the lines of a ``text/event-stream`` body (comments are skipped)."""
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"text": "\n".join(data)}
                yield Event(kind, payload if isinstance(payload, dict) else {"value": payload})
            kind, data = "message", []
        elif line.startswith(":"):
            continue  # keep-alive
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)


class EpochBar:
    """A tqdm bar over training epochs, set from progress events (replays are harmless).

    Arguments:
        description: The bar's label.
        enabled: ``False`` shows nothing.
    """

    def __init__(self, description: str, enabled: bool = True) -> None:
        self.description = description
        self.bar = tqdm(desc=description, unit="epoch", disable=not enabled, total=None)

    def update(self, progress: dict[str, Any]) -> None:
        """Moves the bar to ``progress["epoch"]`` and shows the losses."""
        total = progress.get("max_epochs")
        if total and self.bar.total != total:
            self.bar.total = int(total)
        losses = {
            name: f"{progress[key]:.4g}"
            for name, key in (("train", "train_loss"), ("val", "val_loss"))
            if isinstance(progress.get(key), int | float)
        }
        if losses:
            self.bar.set_postfix(losses, refresh=False)
        epoch = int(progress.get("epoch") or 0)
        if epoch > self.bar.n:
            self.bar.update(epoch - self.bar.n)
        else:
            self.bar.refresh()

    def close(self, status: str) -> None:
        """Ends the bar, showing the job's final status."""
        self.bar.set_description_str(f"{self.description}: {status}", refresh=False)
        self.bar.close()

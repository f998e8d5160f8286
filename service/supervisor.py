"""When to restart a dead child of ``sbiserve serve``: backoff per child, with log lines.

A child that keeps dying right after its start waits longer and longer (1 s, 2 s, 4 s ...
up to 30 s) between restarts, so a broken installation does not spin the CPU; one that
ran for a minute before it died starts again after 1 s.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .children import describe_exit

log = logging.getLogger("sbiserve.stack")


@dataclass
class Backoff:
    """Delays between restarts of one child, in seconds."""

    base_s: float = 1.0
    max_s: float = 30.0
    stable_s: float = 60.0  # a child that ran this long before dying starts over at base_s
    failures: int = 0

    def next_delay(self, ran_s: float) -> float:
        """The wait before the next restart of a child that ran ``ran_s`` seconds."""
        if ran_s >= self.stable_s:
            self.failures = 0
        delay = min(self.max_s, self.base_s * 2**self.failures)
        self.failures += 1
        return delay


@dataclass
class ChildWatch:
    """One supervised child: when it started, and when its restart is due once it died."""

    started: float = field(default_factory=time.monotonic)
    due: float | None = None
    backoff: Backoff = field(default_factory=Backoff)

    def restart_due(self, who: str, exit_code: int | None) -> bool:
        """Whether to restart the dead child ``who`` now; the first call schedules it and logs."""
        now = time.monotonic()
        if self.due is None:
            delay = self.backoff.next_delay(now - self.started)
            self.due = now + delay
            log.warning(
                "%s exited (%s); restarting it in %.0f s",
                who,
                describe_exit(exit_code),
                delay,
            )
        return now >= self.due

    def restarted(self) -> None:
        """Records a (re)start, successful or not: its next death is timed from now."""
        self.started = time.monotonic()
        self.due = None

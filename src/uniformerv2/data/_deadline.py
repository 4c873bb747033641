"""Time limits for decoding: a deadline checked between packets plus a hard limit on the caller's wait.

``call_with_deadline`` runs the work in a daemon thread and waits at most ``timeout`` seconds (plus a small
grace). If the work overruns, the caller gets a ``VideoError`` at once and the thread is told to stop at its
next deadline check (PyAV releases the GIL while decoding, so an abandoned thread does not block the caller).
Threads work the same in the main process and inside DataLoader worker processes, unlike ``SIGALRM``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

from ..errors import VideoError

T = TypeVar("T")
GRACE_S = 0.5


class Deadline:
    """A point in time after which ``check`` raises; ``None`` means no limit."""

    def __init__(self, timeout: float | None, path=""):
        self.timeout = timeout
        self.path = path
        self.cancelled = False
        self.restart()

    def restart(self) -> None:
        """Count the time limit from now (a per-step limit)."""
        self.end = None if self.timeout is None else time.monotonic() + self.timeout

    def remaining(self) -> float | None:
        return None if self.end is None else max(self.end - time.monotonic(), 0.001)

    def expired(self) -> bool:
        return self.cancelled or (self.end is not None and time.monotonic() > self.end)

    def check(self) -> None:
        if self.expired():
            raise VideoError(f"{self.path}: decoding exceeded the {self.timeout:g} s time limit")


def call_with_deadline(fn: Callable[[Deadline], T], timeout: float | None, path="") -> T:
    """``fn(deadline)`` with a hard ``timeout`` (seconds) on how long the caller waits."""
    deadline = Deadline(timeout, path)
    if timeout is None:
        return fn(deadline)
    box: dict = {}

    def work():
        try:
            box["value"] = fn(deadline)
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    thread = threading.Thread(target=work, name="uniformerv2-decode", daemon=True)
    thread.start()
    thread.join(timeout + GRACE_S)
    if thread.is_alive():
        deadline.cancelled = True
        raise VideoError(f"{path}: decoding exceeded the {timeout:g} s time limit (abandoned)")
    if "error" in box:
        raise box["error"]
    return box["value"]

"""Failed logins per user name and client: after a few, that pair waits (guessing passwords
through the login form gets slow) while the same user from elsewhere still logs in."""

from __future__ import annotations

import threading
import time

MAX_FAILURES = 5
WINDOW_S = 300.0
MAX_KEYS = 10_000
"""Pairs remembered at most (a flood of made-up names must not grow memory without bound)."""


class LoginThrottle:
    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def wait(self, user: str, client: str, now: float | None = None) -> float:
        """Seconds until ``user`` may try again from ``client`` (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._failures.get((user, client), []) if t > now - WINDOW_S]
        return 0.0 if len(recent) < MAX_FAILURES else recent[0] + WINDOW_S - now

    def failed(self, user: str, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._failures = {
                    k: v for k, v in self._failures.items() if v and v[-1] > now - WINDOW_S
                }
            times = self._failures.setdefault((user, client), [])
            recent = [t for t in times if t > now - WINDOW_S][-MAX_FAILURES:]
            times[:] = [*recent, now]

    def succeeded(self, user: str, client: str) -> None:
        with self._lock:
            self._failures.pop((user, client), None)

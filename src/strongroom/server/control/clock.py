"""The control plane's clock: real time, or (for tests) a faster one.

``STRONGROOM_CONTROL_CLOCK=SPEED[@ORIGIN]`` makes the control plane's time run SPEED times
faster than real time from the unix time ORIGIN (default: the server's start; a test that
restarts its server gives the same ORIGIN, so time never runs backwards), so a schedule of
every minute fires every 60/SPEED real seconds and grace periods pass as quickly.  Every
time the control plane stores (schedules, job times, overdue) is on this clock; the
vault's own times (point mtimes) stay real.
"""

from __future__ import annotations

import os
import time
from dataclasses import field

from strongroom.records import dataclass

CLOCK_ENV = "STRONGROOM_CONTROL_CLOCK"
TICK_ENV = "STRONGROOM_CONTROL_TICK"
LOST_ENV = "STRONGROOM_CONTROL_LOST"


@dataclass
class Clock:
    speed: float = 1.0
    _start_real: float = field(default_factory=time.time)

    @classmethod
    def from_env(cls) -> Clock:
        speed_text, _, origin_text = os.environ.get(CLOCK_ENV, "").partition("@")
        try:
            speed = float(speed_text) if speed_text else 1.0
            origin = float(origin_text) if origin_text else time.time()
        except ValueError:
            return cls()
        return cls(speed if speed > 0 else 1.0, origin)

    def now(self) -> float:
        real = time.time()
        return self._start_real + (real - self._start_real) * self.speed

    def span(self, real_seconds: float) -> float:
        """A real-time duration in this clock's seconds (timeouts that protect real work)."""
        return real_seconds * self.speed


def tick_seconds() -> float:
    """Real seconds between two scheduler passes (``STRONGROOM_CONTROL_TICK``, default 5)."""
    try:
        tick = float(os.environ.get(TICK_ENV, "5"))
    except ValueError:
        tick = 5.0
    return min(max(tick, 0.05), 60.0)


def lost_seconds(default: float) -> float:
    """Real seconds without a report after which a running job is re-queued
    (``STRONGROOM_CONTROL_LOST``; tests shorten it)."""
    try:
        return max(float(os.environ.get(LOST_ENV, default)), 0.5)
    except ValueError:
        return default

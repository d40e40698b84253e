"""The machine's own ceiling for a speedup from 1 core to 2: the same CPU-bound probe run alone
on core 0, then twice at once on cores 0 and 1.

Why: on the development machines (2 virtual CPUs of a shared host) two busy cores do not
reliably give twice one core's work.  A pure-Python loop took 2.2-2.9 s alone and, two at once,
2.4-4.3 s each (docs/benchmarks.md, "Session 39"); six rounds of this probe gave 1.22x to
2.51x, median 1.96x.  Whatever the host shares between the two virtual CPUs (a physical core's
two threads, caches, another tenant's work) moves every program's speedup, and the issue's
1.7x target is to be read beside what the machine itself gave during the run.  The probe is
interpreter work, like most of strongroom's per-file CPU; it touches no disk.

Pure parsing and arithmetic are separate from the runs so the tests can check them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

# about a second of interpreter work on the development machines
PROBE = "x = 0\nfor i in range({n}): x += i * i\n"
PROBE_LOOPS = 8_000_000


@dataclass(frozen=True)
class CeilingRound:
    """One round: the probe's wall seconds alone, and the slower of two at once."""

    alone: float
    pair: float

    @property
    def ceiling(self) -> float:
        """Twice the work in the pair's time, against once in the alone time."""
        return 2 * self.alone / self.pair if self.pair > 0 else 0.0


def summarize(rounds: Sequence[CeilingRound]) -> dict[str, float]:
    """The median ceiling over the rounds, its range, and the median times."""
    if not rounds:
        return {}
    values = [r.ceiling for r in rounds]
    return {
        "ceiling": round(statistics.median(values), 2),
        "low": round(min(values), 2),
        "high": round(max(values), 2),
        "alone_s": round(statistics.median(r.alone for r in rounds), 3),
        "pair_s": round(statistics.median(r.pair for r in rounds), 3),
        "rounds": len(rounds),
    }


def describe(summary: dict[str, float]) -> str:
    """One sentence for the report; empty when nothing was measured."""
    if not summary:
        return ""
    return (
        f"The machine's own ceiling: a CPU-bound probe (`bench/ceiling.py`) took "
        f"{summary['alone_s']:.2f} s alone on one core and {summary['pair_s']:.2f} s with a "
        f"second copy on the other (medians of {int(summary['rounds'])} rounds), so perfectly "
        f"parallel work could reach {summary['ceiling']:.2f}x from 1 core to 2 here "
        f"({summary['low']:.2f}-{summary['high']:.2f}x)."
    )


def _start(cpu: str, loops: int) -> subprocess.Popen[bytes]:
    code = PROBE.format(n=loops)
    return subprocess.Popen(["taskset", "-c", cpu, sys.executable, "-c", code])


def _timed(cpus: Sequence[str], loops: int) -> float:
    """Wall seconds until every probe started on ``cpus`` at once is done."""
    started = time.perf_counter()
    procs = [(cpu, _start(cpu, loops)) for cpu in cpus]
    for cpu, p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"the ceiling probe failed on CPU {cpu}")
    return time.perf_counter() - started


def measure(rounds: int = 3, loops: int = PROBE_LOOPS) -> list[CeilingRound]:
    """``rounds`` of the probe alone on core 0, then two at once on cores 0 and 1."""
    return [CeilingRound(_timed(["0"], loops), _timed(["0", "1"], loops)) for _ in range(rounds)]

"""The machine's state while a command runs: load average, steal, iowait and busy time from
/proc/stat.

The development machines are shared and virtual: another tenant's work shows as steal time
(the hypervisor ran someone else on our core), a busy disk as iowait.  Both are read as
deltas of the aggregate ``cpu`` line of ``/proc/stat`` over the command, in percent of all
CPU time that passed.  Pure parsing lives here (no imports from the other bench modules) so
the tests can check it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# the fields of a /proc/stat cpu line, in order (guest time is already inside user/nice)
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate ``cpu`` line of ``/proc/stat``, in clock ticks."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )

    @property
    def busy(self) -> int:
        """Ticks at work, whoever for: neither idle, iowait nor steal."""
        return self.user + self.nice + self.system + self.irq + self.softirq


@dataclass(frozen=True)
class MachineState:
    """What the machine did meanwhile: 1-minute load at the start, steal and iowait in %;
    ``busy_pct``: all CPU time spent working (user, nice, system, irq, softirq), whoever
    for.  ``taskset`` pins the command, not the kernel's threads that write its files back
    (writeback, the journal, a loop device): a restore pinned to one core of two kept the
    machine 1.2-1.3 cores busy (docs/benchmarks.md, "Session 23")."""

    load1: float
    steal_pct: float
    iowait_pct: float
    busy_pct: float = 0.0


def parse_cpu_line(text: str) -> CpuTimes:
    """The aggregate ``cpu`` line of a ``/proc/stat`` text (old kernels: missing fields 0)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1 : 1 + len(_FIELDS)]]
            values += [0] * (len(_FIELDS) - len(values))
            return CpuTimes(*values)
    raise ValueError("no aggregate cpu line in /proc/stat")


def read_cpu_times(path: Path = Path("/proc/stat")) -> CpuTimes:
    return parse_cpu_line(path.read_text())


def state_between(before: CpuTimes, after: CpuTimes, load1: float) -> MachineState:
    """Steal and iowait as a share of all CPU time between two snapshots."""
    total = after.total - before.total
    if total <= 0:
        return MachineState(load1, 0.0, 0.0)
    steal = 100.0 * (after.steal - before.steal) / total
    iowait = 100.0 * (after.iowait - before.iowait) / total
    busy = 100.0 * (after.busy - before.busy) / total
    return MachineState(load1, round(steal, 2), round(iowait, 2), round(busy, 2))


def load_average() -> float:
    return os.getloadavg()[0]


def median_state(states: Sequence[MachineState]) -> MachineState:
    return MachineState(
        load1=statistics.median(s.load1 for s in states),
        steal_pct=statistics.median(s.steal_pct for s in states),
        iowait_pct=statistics.median(s.iowait_pct for s in states),
        busy_pct=statistics.median(s.busy_pct for s in states),
    )


def busy_cores(busy_pct: float, cpus: int) -> float:
    """The machine's cores at work on average: ``busy_pct`` of its ``cpus``."""
    return busy_pct / 100.0 * cpus


def machine_cpus(info: dict[str, str]) -> int:
    """The measured machine's CPU count from its facts (``nproc``), not the one that prints a
    saved report; this machine's when they lack it."""
    nproc = info.get("nproc", "")
    return int(nproc) if nproc.isdigit() else os.cpu_count() or 1


def cpu_list(cores: int) -> str:
    """The ``taskset -c`` list pinning a command to its first ``cores`` CPUs: 0, 0-1, ..."""
    if cores < 1:
        raise ValueError("at least one core")
    return "0" if cores == 1 else f"0-{cores - 1}"


def parse_cores(spec: str | None) -> list[int]:
    """``--cores 1,2`` as [1, 2] (no pinning when not given: an empty list)."""
    if not spec:
        return []
    values = [int(v) for v in spec.split(",") if v.strip()]
    available = os.cpu_count() or 1
    if any(v < 1 or v > available for v in values):
        raise ValueError(f"cores must be between 1 and {available}: {spec}")
    return values

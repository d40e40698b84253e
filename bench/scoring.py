"""Issue 19's targets as pure functions of numbers: which ratio to restic each operation must
reach, the 1 -> 2 core speedup, and the live-VM targets against virtnbdbackup.

No imports from the other bench modules, so the tests check these rules directly.  An
operation is named ``"DATASET: OPERATION"``, with ``" [N cores]"`` appended when the run was
pinned with ``taskset`` (``--cores``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OP = re.compile(r"^(?P<ds>[^:]+): (?P<what>.+?)(?: \[(?P<cores>\d+) cores?\])?$")

# operation category -> (wall limit, CPU limit or None): strongroom / restic, at most
RATIO_TARGETS: dict[str, tuple[float, float | None]] = {
    "first": (0.5, 0.5),
    "unchanged": (0.5, None),
    "changed": (0.5, None),
    "restore": (0.6, None),
}
RSS_LIMIT = 1.0  # peak RSS at most restic's
VAULT_LIMIT = 1.03  # vault at most 1.03x restic's after every backup
SMALL_TREES = ("etc",)  # small real trees: at most restic's wall time, every operation
SMALL_TREE_LIMIT = 1.0
SPEEDUP_TARGET = 1.7  # 1 -> 2 cores, first backups and restores
SPEEDUP_CATEGORIES = ("first", "restore")
VM_FULL_WALL = 0.7  # live VM vs virtnbdbackup (uncompressed): full backup wall
VM_INCR_WALL = 0.7  # incremental: wall
VM_INCR_CPU = 1.2  # incremental: CPU seconds of the tool


@dataclass(frozen=True)
class OpName:
    dataset: str
    what: str  # "first backup", "unchanged", "after 1 % change", "restore", ...
    cores: int | None  # pinned to this many cores, or None


@dataclass(frozen=True)
class Numbers:
    """The medians of one operation by one tool."""

    wall: float
    cpu: float
    rss: int
    vault: int | None = None


@dataclass(frozen=True)
class Check:
    """One target on one row: the measured ratio, its limit, and whether it is met."""

    name: str
    ratio: float
    limit: float
    at_least: bool = False  # a speedup must reach the limit; ratios must stay below it

    @property
    def met(self) -> bool:
        return self.ratio >= self.limit if self.at_least else self.ratio <= self.limit

    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "met" if self.met else "**missed**"
        return f"{self.name} {self.ratio:.2f}x ({sign} {self.limit:g}): {verdict}"


def op_name(dataset: str, what: str, cores: int | None = None) -> str:
    suffix = "" if cores is None else f" [{cores} core{'s' if cores > 1 else ''}]"
    return f"{dataset}: {what}{suffix}"


def parse_op(op: str) -> OpName:
    match = _OP.match(op)
    if match is None:
        raise ValueError(f"not an operation name: {op!r}")
    cores = match.group("cores")
    return OpName(match.group("ds"), match.group("what"), int(cores) if cores else None)


def category(what: str) -> str | None:
    """Which target family an operation belongs to."""
    if what.startswith("first backup"):
        return "first"
    if what.startswith("unchanged"):
        return "unchanged"
    if "change" in what:
        return "changed"
    if what.startswith("restore"):
        return "restore"
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def row_checks(op: str, mine: Numbers, restic: Numbers) -> list[Check]:
    """Every target that applies to strongroom's row of ``op`` against restic's."""
    name = parse_op(op)
    checks: list[Check] = []
    family = category(name.what)
    if family in RATIO_TARGETS:
        wall_limit, cpu_limit = RATIO_TARGETS[family]
        checks.append(Check("wall", mine.wall / restic.wall, wall_limit))
        if cpu_limit is not None and restic.cpu > 0:
            checks.append(Check("CPU", mine.cpu / restic.cpu, cpu_limit))
    if name.dataset in SMALL_TREES:
        checks.append(Check("small tree wall", mine.wall / restic.wall, SMALL_TREE_LIMIT))
    rss = _ratio(mine.rss, restic.rss)
    if rss is not None:
        checks.append(Check("RSS", rss, RSS_LIMIT))
    vault = _ratio(mine.vault, restic.vault)
    if vault is not None:
        checks.append(Check("vault", vault, VAULT_LIMIT))
    return checks


def speedup(one_core_wall: float, two_core_wall: float) -> float:
    return one_core_wall / two_core_wall if two_core_wall > 0 else 0.0


def speedup_check(op: str, one_core_wall: float, two_core_wall: float) -> Check | None:
    """The 1 -> 2 core target, for first backups and restores only."""
    if category(parse_op(op).what) not in SPEEDUP_CATEGORIES:
        return None
    return Check("speedup", speedup(one_core_wall, two_core_wall), SPEEDUP_TARGET, at_least=True)


def vm_checks(what: str, mine: Numbers, peer: Numbers) -> list[Check]:
    """Live-VM targets against virtnbdbackup without compression."""
    if what.startswith("full"):
        return [Check("wall", mine.wall / peer.wall, VM_FULL_WALL)]
    if what.startswith("incremental"):
        return [
            Check("wall", mine.wall / peer.wall, VM_INCR_WALL),
            Check("CPU", mine.cpu / peer.cpu, VM_INCR_CPU),
        ]
    return []

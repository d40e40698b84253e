"""Each recovery point's verify state, from what the server knows without the key.

The server's scheduled verify (:mod:`strongroom.server.control.verify`) re-hashes the vault's
content-named objects and records, per object, when a run first listed it (``first_seen``),
when it was last checked and whether that check failed (``object_checks``).  It cannot read a
point, so it cannot know which objects a point uses; it knows which objects *existed* when the
point was written: a point's own object (``points/ID``) is first listed by the first run after
it was written, and every object the point can use was stored before it, so was listed by that
run or an earlier one.  A prune's repack moves chunks of older points into new packs; a
deletion of a pack or index object through the API (the audit log) after the point was
written widens the objects it can use to every object listed.

A point is **verified** (date: the oldest of those checks) when every object it can use was
re-hashed clean after the point was written; **pending** when not yet (or the point is newer
than the last run's listing, or a prune deleted packs after that listing); **damage found**
when any object's last check failed: the server cannot tell whose, ``strongroom check
--read-data`` with the key can.  docs/server.md ("Verify state") is the user's account.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import field

from strongroom.records import dataclass
from strongroom.server.catalog import Catalog
from strongroom.server.control.verify import VAULT_ITEM
from strongroom.server.web.pages import e, when

VERIFIED, PENDING, DAMAGE = "verified", "pending", "damage found"


@dataclass(frozen=True, slots=True)
class PointVerify:
    state: str
    checked: float | None = None
    """For a verified point: the oldest check among the objects it can use."""
    job: int | None = None
    """For damage: the newest failed verify job (its log names the damaged objects)."""
    why: str = ""


@dataclass(frozen=True, slots=True)
class Coverage:
    """One vault's verify records, read once for all its points."""

    vault: str
    listed: float | None
    """When the newest finished verify run started (and listed the vault); None: never."""
    firsts: list[float] = field(default_factory=list)
    """Every checked object's ``first_seen``, ascending."""
    oldest: list[float | None] = field(default_factory=list)
    """``oldest[i]``: the oldest last check among objects ``0..i``; None if one is unchecked."""
    points: dict[str, float] = field(default_factory=dict)
    """Point id -> when a run first listed its object."""
    damaged: int = 0
    damage_job: int | None = None
    moved: float | None = None
    """The newest deletion of a pack or index object through the API (a prune's repack)."""

    def of(self, point: str, written: float) -> PointVerify:
        """The state of point ``point``, stored at ``written`` (the storage's time)."""
        if self.damaged:
            return PointVerify(DAMAGE, job=self.damage_job, why=f"{self.damaged} damaged object(s)")
        seen = self.points.get(point)
        if self.listed is None or seen is None or written > self.listed:
            return PointVerify(PENDING, why="not yet listed by a verify run")
        upto = seen
        if self.moved is not None and self.moved > written:
            if self.moved > self.listed:
                return PointVerify(PENDING, why="a prune moved data after the last verify run")
            upto = float("inf")  # the repack may have put its chunks in any listed pack
        oldest = self.oldest[bisect_right(self.firsts, upto) - 1]
        if oldest is None or oldest < written:
            return PointVerify(PENDING, why="not every object it can use is checked since")
        return PointVerify(VERIFIED, checked=oldest)


def coverage(catalog: Catalog, vault: str) -> Coverage:
    item = VAULT_ITEM + vault
    with catalog.read() as db:
        rows = db.execute(
            "SELECT name, first_seen, checked, error FROM object_checks WHERE vault = ?"
            " ORDER BY first_seen",
            (vault,),
        ).fetchall()
        listed = db.execute(
            "SELECT max(started) FROM jobs WHERE item = ? AND kind = 'verify'"
            " AND state IN ('succeeded', 'failed')",
            (item,),
        ).fetchone()[0]
        failed = db.execute(
            "SELECT max(id) FROM jobs WHERE item = ? AND kind = 'verify' AND state = 'failed'",
            (item,),
        ).fetchone()[0]
        moved = db.execute(
            "SELECT max(time) FROM audit WHERE vault = ? AND action = 'delete' AND status < 300"
            " AND (object LIKE 'data/%' OR object LIKE 'index/%')",
            (vault,),
        ).fetchone()[0]
    firsts: list[float] = []
    oldest: list[float | None] = []
    points: dict[str, float] = {}
    low: float | None = float("inf")
    damaged = 0
    for name, first, checked, error in rows:
        firsts.append(float(first))
        low = None if low is None or checked is None else min(low, float(checked))
        oldest.append(low)
        damaged += error is not None
        if str(name).startswith("points/"):
            points[str(name)[len("points/") :]] = float(first)
    return Coverage(
        vault,
        None if listed is None else float(listed),
        firsts,
        oldest,
        points,
        damaged,
        None if failed is None else int(failed),
        None if moved is None else float(moved),
    )


def vault_state(catalog: Catalog, vault: str) -> tuple[Coverage, dict[str, int]]:
    """The vault's coverage and how many of its points (those the dashboard's mirror knows,
    still listed by the last run or written since) are in each state."""
    cover = coverage(catalog, vault)
    with catalog.read() as db:
        rows = db.execute(
            "SELECT point, committed FROM point_meta WHERE vault = ?", (vault,)
        ).fetchall()
    counts = {VERIFIED: 0, PENDING: 0, DAMAGE: 0}
    for point, committed in rows:
        gone = cover.listed is not None and float(committed) < cover.listed
        if gone and str(point) not in cover.points:
            continue  # pruned before the last run listed the vault
        counts[cover.of(str(point), float(committed)).state] += 1
    return cover, counts


def cell(v: PointVerify) -> str:
    """The state as a table cell's content (the points table and the overview)."""
    if v.state == VERIFIED:
        return f'<span class="badge s-succeeded">verified</span> {e(when(v.checked))}'
    if v.state == DAMAGE:
        text = f'damage found<span class="sr"> ({e(v.why)})</span>'
        if v.job is None:
            return f'<span class="badge s-failed">{text}</span>'
        return f'<a class="badge s-failed" href="/ui/jobs/{v.job}">{text}</a>'
    return f'<span class="badge s-queued" title="{e(v.why)}">pending</span>'

"""Machines, policies and protected items in the catalog (the control plane's definitions)."""

from __future__ import annotations

import json
import re
from dataclasses import field

from strongroom.records import dataclass
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.catalog_db import Conflict, Db
from strongroom.server.control.calendar import ScheduleError, parse_schedule

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ITEM_KINDS = ("files", "vm", "disk")
_TARGET = {"vm": "domain", "disk": "image"}
CONSISTENCY = ("auto", "app", "crash")
_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")
AGENT_SOURCE = "agent:"
"""Every agent token's sources start with ``agent:MACHINE``, a source no item has: a token
with no item yet is still scoped (an unscoped backup token would read every source)."""


def check_name(name: str, what: str) -> str:
    if not NAME.fullmatch(name):
        raise ApiError(400, f"invalid {what} name {name!r}: letters, digits, '.', '_', '-'")
    return name


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    vault: str
    schedule: str
    window_start: str | None = None
    window_end: str | None = None
    retries: int = 0
    retry_delay: float = 10.0
    """Minutes between a failed attempt and the next."""
    consistency: str = "auto"
    grace: float = 60.0
    """Minutes after a scheduled time by which a backup must have succeeded (else overdue)."""
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    created: float = 0.0

    def check(self) -> None:
        check_name(self.name, "policy")
        check_name(self.vault, "vault")
        try:
            parse_schedule(self.schedule)
        except ScheduleError as exc:
            raise ApiError(400, str(exc)) from None
        if (self.window_start is None) != (self.window_end is None):
            raise ApiError(400, "a window needs a start and an end")
        if self.consistency not in CONSISTENCY:
            raise ApiError(400, f"consistency must be one of {', '.join(CONSISTENCY)}")
        numbers = (self.retries, self.retry_delay, self.grace, *self.keep())
        if any(n < 0 for n in numbers) or self.retries > 100:
            raise ApiError(400, "retries, delays, grace and keep counts must be 0 or more")

    def keep(self) -> tuple[int, int, int, int, int, int]:
        return (
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        )

    def in_window(self, minute_of_day: int) -> bool:
        if self.window_start is None or self.window_end is None:
            return True
        start, end = _minutes(self.window_start), _minutes(self.window_end)
        if start <= end:
            return start <= minute_of_day < end
        return minute_of_day >= start or minute_of_day < end  # across midnight


def parse_window(text: str) -> tuple[str, str]:
    m = _WINDOW.fullmatch(text.strip())
    if m is None:
        raise ApiError(400, f"invalid window {text!r}: HH:MM-HH:MM (UTC), e.g. 22:00-06:00")
    start, end = text.strip().split("-")
    return start, end


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


@dataclass(frozen=True, slots=True)
class Item:
    name: str
    kind: str
    machine: str
    targets: list[str]
    """Paths (files), the domain (vm) or the image (disk)."""
    excludes: list[str] = field(default_factory=list)
    policy: str = ""
    source: str = ""
    """The source its points are committed under: the item's name; for a ``vm`` item the
    domain's name (the image engine's source for a VM, which keeps one chain with
    ``strongroom backup vm``)."""
    created: float = 0.0
    next_run: float | None = None
    due_since: float | None = None
    """The scheduled time of the oldest run not yet followed by a success."""
    last_success: float | None = None
    last_point: str | None = None

    def public(self) -> dict[str, object]:
        # not dataclasses.asdict: its deep copies were most of `items list`'s time (500 items)
        doc: dict[str, object] = {f: getattr(self, f) for f in Item.__slots__}
        doc["targets"], doc["excludes"] = list(self.targets), list(self.excludes)
        return doc


_POLICY_COLUMNS = tuple(Policy.__slots__)
_ITEM_COLUMNS = tuple(Item.__slots__)


class Definitions:
    """Policies, items and machines over the catalog's connection."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # --- policies --------------------------------------------------------------------------

    def add_policy(self, policy: Policy) -> None:
        policy.check()
        values = tuple(getattr(policy, c) for c in _POLICY_COLUMNS)
        marks = ", ".join("?" * len(values))
        with self.catalog.tx() as db:
            try:
                db.execute(
                    f"INSERT INTO policies ({', '.join(_POLICY_COLUMNS)}) VALUES ({marks})", values
                )
            except Conflict:
                raise ApiError(409, f"policy {policy.name!r} exists already", "exists") from None

    def policy(self, name: str) -> Policy | None:
        cols = ", ".join(_POLICY_COLUMNS)
        with self.catalog.read() as db:
            row = db.execute(f"SELECT {cols} FROM policies WHERE name = ?", (name,)).fetchone()
        return Policy(*row) if row else None

    def policies(self) -> list[Policy]:
        cols = ", ".join(_POLICY_COLUMNS)
        with self.catalog.read() as db:
            rows = db.execute(f"SELECT {cols} FROM policies ORDER BY name").fetchall()
        return [Policy(*r) for r in rows]

    # --- items -----------------------------------------------------------------------------

    def add_item(self, item: Item, next_run: float | None) -> None:
        """Protect an item; the machine's token may then commit points of its source."""
        check_name(item.name, "item")
        if item.kind not in ITEM_KINDS:
            raise ApiError(400, f"item kind must be one of {', '.join(ITEM_KINDS)}")
        if not item.targets or any(not t or "\0" in t for t in item.targets):
            raise ApiError(400, "an item needs at least one path, domain or image")
        if item.kind != "files" and len(item.targets) != 1:
            raise ApiError(400, f"a {item.kind} item names exactly one {_TARGET[item.kind]}")
        source = item.targets[0] if item.kind == "vm" else item.name
        with self.catalog.tx() as db:
            if (
                db.execute("SELECT 1 FROM policies WHERE name = ?", (item.policy,)).fetchone()
                is None
            ):
                raise ApiError(404, f"no policy {item.policy!r}", "no-policy")
            machine = db.execute(
                "SELECT token FROM machines WHERE name = ?", (item.machine,)
            ).fetchone()
            if machine is None:
                raise ApiError(
                    404, f"no machine {item.machine!r}: register its agent first", "no-machine"
                )
            try:
                db.execute(
                    "INSERT INTO items (name, kind, machine, targets, excludes, policy, source,"
                    " created, next_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.name,
                        item.kind,
                        item.machine,
                        json.dumps(item.targets),
                        json.dumps(item.excludes),
                        item.policy,
                        source,
                        item.created,
                        next_run,
                    ),
                )
            except Conflict:
                raise ApiError(409, f"item {item.name!r} exists already", "exists") from None
            rescope(db, item.machine, str(machine[0]))

    def item(self, name: str) -> Item | None:
        with self.catalog.read() as db:
            return item_in(db, name)

    def items(self, machine: str | None = None) -> list[Item]:
        sql = f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items"
        args: tuple[str, ...] = ()
        if machine is not None:
            sql, args = sql + " WHERE machine = ?", (machine,)
        with self.catalog.read() as db:
            rows = db.execute(sql + " ORDER BY name", args).fetchall()
        return [_item(r) for r in rows]

    # --- machines --------------------------------------------------------------------------

    def add_machine(self, name: str, token_id: str, now: float) -> None:
        check_name(name, "machine")
        with self.catalog.tx() as db:
            try:
                db.execute(
                    "INSERT INTO machines (name, token, created) VALUES (?, ?, ?)",
                    (name, token_id, now),
                )
            except Conflict:
                raise ApiError(409, f"machine {name!r} is registered already", "exists") from None

    def machine_of_token(self, token_id: str) -> str | None:
        with self.catalog.read() as db:
            row = db.execute("SELECT name FROM machines WHERE token = ?", (token_id,)).fetchone()
        return str(row[0]) if row else None

    def seen(self, machine: str, now: float, address: str | None) -> None:
        with self.catalog.tx() as db:
            db.execute(
                "UPDATE machines SET last_seen = ?, address = ? WHERE name = ?",
                (now, address, machine),
            )

    def machines(self) -> list[dict[str, object]]:
        with self.catalog.read() as db:
            rows = db.execute(
                "SELECT name, token, created, last_seen, address FROM machines ORDER BY name"
            ).fetchall()
        keys = ("name", "token", "created", "last_seen", "address")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def rescope(db: Db, machine: str, token_id: str) -> None:
    """The machine's token: scoped to ``agent:MACHINE`` and its items' sources."""
    rows = db.execute("SELECT source FROM items WHERE machine = ?", (machine,)).fetchall()
    sources = sorted({AGENT_SOURCE + machine, *(str(r[0]) for r in rows)})
    db.execute("UPDATE tokens SET sources = ? WHERE id = ?", (json.dumps(sources), token_id))


def item_in(db: Db, name: str) -> Item | None:
    """The item ``name`` (inside a transaction the caller holds)."""
    row = db.execute(
        f"SELECT {', '.join(_ITEM_COLUMNS)} FROM items WHERE name = ?", (name,)
    ).fetchone()
    return _item(row) if row else None


def _item(r: tuple[object, ...]) -> Item:
    values = dict(zip(_ITEM_COLUMNS, r, strict=True))
    values["targets"] = json.loads(str(values["targets"]))
    values["excludes"] = json.loads(str(values["excludes"]))
    return Item(**values)  # type: ignore[arg-type]

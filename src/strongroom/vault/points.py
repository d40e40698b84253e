"""Recovery points: sealed JSON manifests at ``points/<BLAKE3 of stored bytes>``."""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, field
from datetime import UTC, datetime
from typing import Any

from strongroom.errors import IntegrityError
from strongroom.hostname import host_name
from strongroom.records import dataclass

POINTS_PREFIX = "points/"
KINDS = ("vm", "disk", "files")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class PointManifest:
    """What a recovery point says: its root trees plus enough context to find and trust it."""

    kind: str
    source: str
    roots: list[str]
    time: str = field(default_factory=now_iso)
    parent: str | None = None
    consistency: str = "none"
    tags: list[str] = field(default_factory=list)
    host: str = field(default_factory=host_name)
    user: str = field(default_factory=getpass.getuser)
    summary: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown recovery point kind {self.kind!r}")

    def encode(self) -> bytes:
        return json.dumps({"v": 1, **asdict(self)}, sort_keys=True).encode("utf-8")

    @property
    def timestamp(self) -> datetime:
        return datetime.fromisoformat(self.time)

    def plain_facts(self) -> dict[str, Any]:
        """What a vault server's dashboard shows of the point (sent in the clear as the point
        is committed): never its roots, paths, host or user.  ``added`` is what the backup
        stored (new chunks after compression), ``raw`` the same chunks before compression,
        ``logical`` the point's size (files' bytes, disks' data): the dashboard's dedup and
        compression factors (docs/server.md)."""
        s = self.summary
        files = self.kind == "files"
        added = s.get("bytes_added") if files else s.get("bytes_stored", s.get("bytes_new"))
        raw = s.get("data_added") if files else s.get("bytes_new")
        logical = s.get("logical_bytes") if files else s.get("data_bytes")
        return {
            "kind": self.kind,
            "time": self.time,
            "consistency": self.consistency,
            "tags": list(self.tags),
            "added": _count(added),
            "raw": _count(raw) if "bytes_stored" in s or files else None,
            "logical": _count(logical),
        }


def _count(n: object) -> int | None:
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


@dataclass(frozen=True)
class RecoveryPoint:
    """A stored manifest with its id (the BLAKE3 of its stored bytes, hex)."""

    point_id: str
    manifest: PointManifest

    @property
    def short_id(self) -> str:
        return self.point_id[:12]


def decode_manifest(plain: bytes, name: str) -> PointManifest:
    try:
        doc = json.loads(plain)
        if not isinstance(doc, dict) or doc.pop("v", None) != 1:
            raise ValueError("unknown manifest version")
        known = {k: v for k, v in doc.items() if k in PointManifest.__dataclass_fields__}
        manifest = PointManifest(**known)
        _check_types(manifest)
        return manifest
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise IntegrityError(f"{name}: malformed recovery point ({exc})", name=name) from None


def _check_types(m: PointManifest) -> None:
    """Every field of the type the code relies on (an authentic manifest may still come
    from a buggy or hostile writer)."""
    strings = (m.kind, m.source, m.time, m.consistency, m.host, m.user)
    if not all(isinstance(v, str) for v in strings) or not isinstance(m.parent, str | None):
        raise ValueError("a field that must be text is not")
    lists = (m.roots, m.tags)
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists):
        raise ValueError("roots and tags must be lists of text")
    if not all(len(r) == 64 for r in m.roots):
        raise ValueError("a root is not a chunk id")
    bytes.fromhex("".join(m.roots))
    if not isinstance(m.summary, dict) or not isinstance(m.meta, dict):
        raise ValueError("summary and meta must be objects")
    m.timestamp  # noqa: B018  (validates the time)

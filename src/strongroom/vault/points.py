"""Recovery points: sealed JSON manifests at ``points/<BLAKE3 of stored bytes>``."""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from strongroom.errors import IntegrityError

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
    host: str = field(default_factory=socket.gethostname)
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
        if doc.pop("v") != 1:
            raise ValueError("unknown manifest version")
        known = {k: v for k, v in doc.items() if k in PointManifest.__dataclass_fields__}
        return PointManifest(**known)
    except (ValueError, TypeError, KeyError) as exc:
        raise IntegrityError(f"{name}: malformed recovery point ({exc})", name=name) from None

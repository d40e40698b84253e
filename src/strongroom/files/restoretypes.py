"""What a files restore is asked (:class:`RestoreOptions`) and what it reports
(:class:`RestoreSummary`): the restore's public types, kept apart from its machinery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

from strongroom.records import dataclass


@dataclass
class RestoreOptions:
    target: str | Path
    selectors: Sequence[str] = ()
    on_conflict: str = "overwrite"
    dry_run: bool = False
    verify: bool = False
    workers: int | None = None  # default: job_workers(), by the storage and the file sizes
    durable: bool = True
    # Worker processes for big trees of small files on local storage: None picks one per core
    # when the restore is worth it, 0 keeps to threads, N > 0 forces N
    processes: int | None = None


@dataclass
class RestoreSummary:
    point_id: str = ""
    target: str = ""
    files: int = 0
    dirs: int = 0
    links: int = 0
    others: int = 0
    bytes_written: int = 0
    verified: int = 0
    skipped: list[str] = field(default_factory=list)
    kept_both: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)
    # Not failures of the restore: metadata the target cannot take (inode flags)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    duration: float = 0.0
    processes: int = 0  # worker processes that wrote the files (0: threads)
    helped_dirs: int = 0  # folders the restore's own process wrote beside its workers
    returned_files: int = 0  # files a worker planned and handed back to it at the end
    shared_files: int = 0  # files it planned and handed to a worker out of them

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.point_id,
            "target": self.target,
            "files": self.files,
            "dirs": self.dirs,
            "links": self.links,
            "others": self.others,
            "bytes_written": self.bytes_written,
            "verified": self.verified,
            "skipped": self.skipped,
            "kept_both": self.kept_both,
            "errors": [{"path": p, "reason": r} for p, r in self.errors],
            "actions": [{"action": a, "path": p} for a, p in self.actions],
            "warnings": [{"path": p, "reason": r} for p, r in self.warnings],
            "duration": round(self.duration, 3),
            "processes": self.processes,
            "helped_dirs": self.helped_dirs,
            "returned_files": self.returned_files,
            "shared_files": self.shared_files,
        }

"""What a files backup is asked to do (:class:`BackupOptions`), what it reports
(:class:`BackupSummary`), and what its worker processes answer (:class:`DirListing`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strongroom.chunking import CDCParams
from strongroom.hostname import host_name
from strongroom.records import dataclass

if TYPE_CHECKING:
    from strongroom.files.nodes import Node

Progress = Callable[[int, int, str], None]


@dataclass
class BackupOptions:
    paths: Sequence[str]
    source: str | None = None
    tags: Sequence[str] = ()
    excludes: Sequence[str] = ()
    one_file_system: bool = False
    exclude_nodump: bool = False  # leave out files and folders flagged no-dump (chattr +d)
    # Readers: compression, hashing and encryption release the GIL, but every system call of
    # a small file hands it over too; two readers keep two cores busy with about half the
    # context switches of three (restic also reads two files at a time by default).  0: the
    # walking thread reads (in a worker process, where the processes are the parallelism).
    workers: int = 2
    use_cache: bool = True
    cache_root: Path | None = None
    cdc: CDCParams = field(default_factory=CDCParams)
    # Worker processes for big trees (files/procpool.py): None picks one per core but one,
    # since this process walks too (walkprocs.py: it lists a folder itself whenever every
    # worker is full); 0 keeps everything in this process.  They start once the walk has met
    # ``processes_after`` entries, a third of them files to read: only a big tree with much to
    # read pays back their start-up (imports, index load); /etc and an unchanged tree never do.
    processes: int | None = None
    processes_after: int = 3000

    def source_name(self) -> str:
        """``source``, else this host's name."""
        return self.source or host_name()


@dataclass
class BackupSummary:
    point_id: str = ""
    source: str = ""
    files: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    dirs_reused: int = 0  # folders whose tree was reused from the files cache's folder rows
    others: int = 0
    logical_bytes: int = 0
    bytes_read: int = 0
    bytes_added: int = 0
    data_added: int = 0
    chunks_new: int = 0
    tree_bytes_added: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # not about any file: the files cache
    duration: float = 0.0
    processes: int = 0  # worker processes started
    worker_dirs: int = 0  # folders handed to them (one level, or with their subtree)
    helped_dirs: int = 0  # folders this process listed itself while every worker was full
    worker_reads: int = 0  # files of folders this process listed that a worker read for it

    def counts(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "dirs": self.dirs,
            "dirs_reused": self.dirs_reused,
            "others": self.others,
            "logical_bytes": self.logical_bytes,
            "bytes_read": self.bytes_read,
            "bytes_added": self.bytes_added,
            "data_added": self.data_added,
            "chunks_new": self.chunks_new,
            "content_added": self.data_added - self.tree_bytes_added,
            "errors": len(self.errors),
            "inconsistent": len(self.inconsistent),
            "skipped": len(self.skipped),
            "duration": round(self.duration, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        doc = {"point": self.point_id, "source": self.source, **self.counts()}
        doc["error_list"] = [{"path": p, "reason": r} for p, r in self.errors]
        doc["inconsistent_list"] = self.inconsistent
        doc["skipped_list"] = [{"path": p, "reason": r} for p, r in self.skipped]
        doc["warnings"] = self.warnings
        return doc


@dataclass
class WrittenCounts:
    """What a backup's worker processes wrote (their packs and index objects)."""

    stored_new: int = 0
    raw_new: int = 0
    chunks_new: int = 0
    index_names: list[str] = field(default_factory=list)  # the index objects written
    borrowed: list[bytes] = field(default_factory=list)  # chunks another process claimed


@dataclass
class DirListing:
    """A folder as a worker did it: with its whole subtree (``tree_id``), or one level (every
    node in order, subfolder nodes without their subtree, and which of them to descend into);
    and the files cache's news: folders' rows written again (prepared:
    ``cacherows.prepare_dir``) and the folders whose rows are to be kept alive."""

    counts: dict[str, int]
    tree_id: bytes | None = None
    nodes: list[Node] = field(default_factory=list)
    subdirs: list[tuple[int, int]] = field(default_factory=list)  # (index in nodes, device)
    rows: list[tuple[bytes, bytes, int, bytes]] = field(default_factory=list)
    touches: list[bytes] = field(default_factory=list)
    folders: list[object] = field(default_factory=list)  # folder rows (prepared)
    rejected: int = 0  # folders' cache rows whose MAC failed
    errors: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    nread: int = 0
    done_files: int = 0
    dir_error: str | None = None  # the directory could not be listed

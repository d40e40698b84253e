"""A restore's jobs: which files (or which slice of a big file) one worker writes at a time.

Files come in the order of the packs that hold them and are cut into jobs, each bounded in
files, chunks and bytes (:class:`JobLimits`); a file too big for one job is cut into slices
that share its :class:`FileTask`.  The writing itself is ``files/fetch.py``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence

from strongroom.files.metadata import Fresh
from strongroom.files.plan import Entry
from strongroom.records import dataclass
from strongroom.vault import Located, Place


@dataclass(frozen=True, slots=True)
class JobLimits:
    """How much one job takes: small enough to spread a restore over the workers and keep
    one file's failure cheap, large enough that the hand-off per job does not count."""

    files: int = 64
    chunks: int = 64
    bytes: int = 4 << 20


_LIMITS = JobLimits()  # plan_jobs's default (frozen: one instance serves every call)


@dataclass(eq=False, slots=True)
class FileTask:
    """A regular file on its way: where its chunks are and what became of it."""

    entry: Entry
    tmp: bytes
    chunks: Sequence[Located]
    extents: list[tuple[int, int]]
    starts: Sequence[int] = ()  # each chunk's offset in the content
    raw: int = 0  # the content's size (the chunks' raw sizes the index gives)
    pieces: int = 1  # jobs that write a part of it (fixed once planned)
    left: int = 1  # of those, how many have not finished yet (under ContentWriter's lock)
    fd: int = -1
    direct_fd: int = -1  # a big file's O_DIRECT descriptor, if any
    reserved: bool = False  # its extents allocated, reading as zeros: zeros need no write
    fresh: Fresh | None = None  # created private and bare (metadata.Fresh): calls to skip
    end: int = 0  # the file's size so far: the highest offset written
    written: int = 0  # content bytes written
    failure: str | None = None
    issues: list[str] | None = None  # metadata that could not be applied
    verified: bool = False
    unnamed: bool = False  # created with O_TMPFILE: ``fd`` stays open until it is linked
    in_place: bool = False  # created at its destination (a staged tree): nothing to rename
    made: bool = False  # made there, empty, by another writer (MADE): opened, not created

    def __post_init__(self) -> None:
        starts = []
        pos = 0
        for _, entry in self.chunks:
            starts.append(pos)
            pos += entry.raw if entry is not None else 0  # unknown: the read fails the file
        self.starts, self.raw = starts, pos

    @property
    def show(self) -> str:
        return os.fsdecode(self.entry.dest)


@dataclass(frozen=True, slots=True)
class Slice:
    """The chunks [lo, hi) of a big file: one job."""

    task: FileTask
    lo: int
    hi: int


# Where a file's first chunk is (the vault's read plan, one int that sorts in the packs'
# order): a restore holds one for every file while it runs, so it must stay small.
NO_CHUNKS: Place = -1  # sorts first (the vault's places are never negative): no read needed


# A job: whole files (their tasks are made by the worker; each entry's ``place`` is where its
# first chunk is), or a slice of a big file.
Job = list[Entry] | Slice


def plan_jobs(
    files: Iterable[Entry], big: Callable[[Entry], FileTask], limits: JobLimits = _LIMITS
) -> Iterator[Job]:
    """Consecutive files grouped into jobs; a file too big for one job gets jobs of its own.

    Sized from the nodes alone (chunk count, file size): the caller's thread does as little
    per file as it can, the workers do the rest.  ``big`` makes a big file's task, which its
    slices share.
    """
    job: list[Entry] = []
    chunks = size = 0
    for e in files:
        node = e.node
        n = len(node.chunks)
        if n > limits.chunks or node.size > limits.bytes:
            if job:
                yield job
                job, chunks, size = [], 0, 0
            yield from _slices(big(e), limits)
            continue
        if job and (
            len(job) >= limits.files
            or chunks + n > limits.chunks
            or size + node.size > limits.bytes
        ):
            yield job
            job, chunks, size = [], 0, 0
        job.append(e)
        chunks += n
        size += node.size
    if job:
        yield job


def _slices(task: FileTask, limits: JobLimits) -> Iterator[Slice]:
    """A big file's chunks cut into bounded runs; ``pieces`` is set before any is handed out."""
    cuts: list[tuple[int, int]] = []
    lo = size = 0
    for k, (_, entry) in enumerate(task.chunks):
        raw = entry.raw if entry is not None else 0
        if k > lo and (k - lo >= limits.chunks or size + raw > limits.bytes):
            cuts.append((lo, k))
            lo, size = k, 0
        size += raw
    cuts.append((lo, len(task.chunks)))
    task.pieces = task.left = len(cuts)
    for lo, hi in cuts:
        yield Slice(task, lo, hi)

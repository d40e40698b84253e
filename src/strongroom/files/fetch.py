"""The worker side of writing a restore's files: jobs, chunk reads, positional writes.

Files (in the order of the packs that hold them) are cut into jobs (``files/restorejobs.py``):
a run of whole files, or one slice of a big file.  A worker runs a job from
start to end with no hand-off: it reads the job's chunks (blobs adjacent in a pack in one
ranged read, across file boundaries), creates each file under its temporary name, writes every
chunk at its place with ``pwrite`` (holes stay holes) and finishes each file whose last piece
it wrote: size, optional verification, metadata, close.  The slices of a big file may run on
several workers at once; they share its descriptor, and whichever writes the last one
finishes the file.  A chunk of zeros in a big file is not written (its extents are allocated
before it is written: ``files/zeros.py``).  Nothing here renames a file into place: the caller
does that once the data is durable.

A chunk that cannot be read, or a write that fails, fails its file only (recorded in
:attr:`FileTask.failure`, the temporary file removed).  Out of space raises
:class:`FilesError` at once; the caller then stops every job and calls
:meth:`ContentWriter.discard_all`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

from strongroom.errors import FilesError, StrongroomError
from strongroom.files.longpath import on_path
from strongroom.files.metadata import ExtentReader, Fresh, apply_metadata, create_mode
from strongroom.files.placing import start_writeback
from strongroom.files.plan import CREATE, Entry
from strongroom.files.restorejobs import FileTask, Job, Slice
from strongroom.files.vaultview import PlannedReads
from strongroom.files.zeros import Fetched, KnownZeros, data_runs, merged
from strongroom.storage.directio import DirectSink, open_direct, reserve
from strongroom.vault import Located

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Files this big are written past the page cache (storage/directio.py): on a VM whose free
# memory went back to the host each new page of the cache costs a fault in the host (a
# restore of 2 x 512 MiB went from 6.5 s, 7.3 s of it system time, to 1.8 s), and a durable
# restore has to wait for the disk anyway.  From 256 KiB on: 242 text files of 256 KiB - 4 MiB
# restored in 1.0-1.4 s instead of 2.4-3.2 s, a 1 GiB copy of /usr in 3.6-4.0 s instead of
# 4.3-5.6 s (docs/benchmarks.md, session 13).  Smaller files are most of a restore of small
# files, where direct writes were no faster (every write waits for the disk) and the cache's
# write-back overlaps the work.
DIRECT_FROM = 256 << 10
_CREATE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_MADE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
# An entry's action when another writer made its file, empty, at its destination in a staged
# tree (make_empty): opened there, not created.
MADE = "made"
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)  # 0: a platform without it
_UNNAMED_FLAGS = os.O_RDWR | _O_TMPFILE | os.O_CLOEXEC
# O_TMPFILE refused: an old kernel or a file system without it (the open fails with one of these)
_NO_UNNAMED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT)


def write_at(
    fd: int,
    extents: list[tuple[int, int]],
    pos: int,
    data: bytes | memoryview,
    sink: DirectSink | None = None,
) -> int:
    """Write ``data``, found at ``pos`` of the file's content, into its data extents (through
    ``sink`` when given).

    The content is the extents back to back; what lies beyond the last extent is dropped (the
    point said the file is that big).  Returns the file offset just past the last byte written
    (0 if none was).
    """
    view = memoryview(data)
    end = 0
    for offset, at, n in _placed(extents, pos, len(view)):
        if sink is not None:
            sink.write(view[at : at + n], offset)
        else:
            _pwrite_all(fd, view[at : at + n], offset)
        end = offset + n
    return end


def content_end(extents: list[tuple[int, int]], pos: int, size: int) -> int:
    """The file offset just past ``size`` bytes at ``pos`` of the content (0 if none of them
    lands in an extent): where :func:`write_at` would have ended."""
    end = 0
    for offset, _, n in _placed(extents, pos, size):
        end = offset + n
    return end


def _placed(extents: list[tuple[int, int]], pos: int, size: int) -> Iterator[tuple[int, int, int]]:
    """Where ``size`` bytes at ``pos`` of the content go: (file offset, offset in the bytes,
    count) per extent they touch."""
    base = 0  # where the current extent starts in the content
    done = 0
    for offset, length in extents:
        if done == size:
            break
        if pos >= base + length:
            base += length
            continue
        into = pos - base
        n = min(length - into, size - done)
        yield offset + into, done, n
        done += n
        pos += n
        base += length


def _close_direct(task: FileTask) -> None:
    if task.direct_fd >= 0:
        with contextlib.suppress(OSError):
            os.close(task.direct_fd)
        task.direct_fd = -1


def _discard(task: FileTask) -> None:
    """Close the file and remove it (a file without a name goes with its descriptor)."""
    _close_direct(task)
    if task.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(task.fd)
        task.fd = -1
    if not task.unnamed:
        with contextlib.suppress(OSError):
            on_path(os.unlink, task.tmp)


def make_empty(names: TempNaming, e: Entry) -> bool:
    """Make ``e``'s file, empty, at its destination in a staged tree, as the writer that
    fills it would have (see :data:`MADE`); False where it cannot (the entry stays this
    writer's).  Only one process then adds names to a folder: two creating files in one
    ext4 folder took longer together than one alone (the folder's lock; 50,000 files in
    2.4 s against 1.4 s, docs/benchmarks.md, "Session 29")."""
    fresh = names.fresh(e.dest)
    mode = 0o600 if fresh is None else create_mode(e.node)
    try:
        os.close(on_path(os.open, e.dest, _CREATE_FLAGS, mode))
    except OSError:
        return False
    return True


def _open_made(path: bytes) -> int:
    """Open a file another writer made for this one (:func:`make_empty`); one that cannot be
    opened is removed: an empty file must not stand in for the content that failed."""
    try:
        return on_path(os.open, path, _MADE_FLAGS)
    except OSError:
        with contextlib.suppress(OSError):
            on_path(os.unlink, path)
        raise


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


class TempNaming(Protocol):
    """Where a restore creates its files (``placing.TempNames``): a temporary name in (or for)
    a folder, and what a file created at such a name already has (:class:`Fresh`, or None)."""

    def __call__(self, folder: bytes) -> bytes: ...

    def fresh(self, tmp: bytes) -> Fresh | None: ...

    def in_tree(self, folder: bytes) -> bool: ...


class ContentWriter:
    """Runs jobs (thread-safe): see the module docstring.  ``names`` gives a fresh temporary
    name in the folder it is passed, and says what a file created there already has.

    ``live`` holds every task whose temporary file exists and is neither removed nor handed
    on by the caller: after a failure the caller removes them with :meth:`discard_all`.
    """

    def __init__(
        self,
        vault: PlannedReads,
        names: TempNaming,
        *,
        verify: bool,
        as_root: bool,
        span: int | None = None,
        writeback: bool = False,
        unnamed: bool = False,
    ) -> None:
        self._vault = vault
        # files created without a name and linked into place (see _create)
        self._unnamed = unnamed and _O_TMPFILE != 0
        self._names, self._span = names, span
        self._verify, self._as_root = verify, as_root
        self._writeback = writeback  # start each file's writeback when it is finished
        self._lock = threading.Lock()  # a big file's shared state: fd, left, end, written
        self._zeros = KnownZeros()
        self.live: set[FileTask] = set()

    def task(self, e: Entry, chunks: list[Located] | None = None) -> FileTask:
        """A file's task: its temporary name and where its chunks are."""
        if chunks is None:
            chunks = self._vault.locate(e.node.chunks)
        # in a folder no one else sees until the restore is done (a staged tree: staged.py),
        # a file the plan creates is made at its destination
        if e.action in (CREATE, MADE) and self._names.in_tree(e.folder):
            made = e.action == MADE
            return FileTask(e, e.dest, chunks, e.node.data_extents(), in_place=True, made=made)
        return FileTask(e, self._names(e.folder), chunks, e.node.data_extents())

    def run(self, job: Job) -> list[FileTask]:
        """Write the job's files (or slice); return the files it finished, failed ones too."""
        pieces: list[tuple[FileTask, int, int]] = []
        if isinstance(job, Slice):
            pieces.append((job.task, job.lo, job.hi))
            chunks = job.task.chunks[job.lo : job.hi]
        else:
            chunks = []
            for e in job:
                ids = e.node.chunks
                at = len(chunks)
                if ids:
                    chunks.append(self._vault.located_at(ids[0], e.place))
                    if len(ids) > 1:
                        chunks += self._vault.locate(ids[1:])
                pieces.append((self.task(e, chunks[at:]), 0, len(ids)))
        stream = self._read(chunks)
        finished: list[FileTask] = []
        for task, lo, hi in pieces:
            self._write(task, lo, hi, stream)
            if self._last_piece(task):
                finished.append(self._finish(task))
        return finished

    def _read(self, chunks: Sequence[Located]) -> Iterator[Fetched]:
        """The job's chunks in order; known zeros (files/zeros.py) are not read."""
        known = self._zeros.split(chunks)
        if known is None:
            return self._vault.read_planned(chunks, self._span)
        wanted = [c for c, zero in zip(chunks, known, strict=True) if not zero]
        return merged(chunks, known, self._vault.read_planned(wanted, self._span))

    def discard_all(self) -> None:
        """Close and remove every live temporary file; only once no job runs any more."""
        for task in self.live:
            _discard(task)
        self.live.clear()

    # --- one piece ---------------------------------------------------------------------------

    def _write(self, task: FileTask, lo: int, hi: int, stream: Iterator[Fetched]) -> None:
        if not self._open(task):
            for _ in range(lo, hi):
                next(stream)  # another file of the job may need the chunks after these
            return
        end = written = 0
        sink = DirectSink(task.fd, task.direct_fd) if task.direct_fd >= 0 else None
        for k in range(lo, hi):
            piece = next(stream)
            if task.failure is not None:
                continue
            if isinstance(piece, StrongroomError):
                task.failure = f"cannot read its data: {piece}"
                continue
            try:
                end = max(end, self._put(task, k, piece, sink))
            except OSError as exc:
                task.failure = self._os_reason(task, exc, "cannot write")
                continue
            written += len(piece)
            # let go of it before the next is read: up to 4 MiB a thread otherwise held while
            # the next chunk is fetched, decrypted and decompressed
            del piece
        if sink is not None and task.failure is None:
            try:
                sink.flush()
            except OSError as exc:
                task.failure = self._os_reason(task, exc, "cannot write")
        if task.pieces == 1:
            task.end, task.written = end, written
        else:
            with self._lock:
                task.end = max(task.end, end)
                task.written += written

    def _put(
        self, task: FileTask, k: int, piece: bytes | memoryview, sink: DirectSink | None
    ) -> int:
        """Write chunk ``k``'s bytes; where the file's extents are reserved its zeros are not
        written (files/zeros.py).  Returns the file offset just past the chunk."""
        pos = task.starts[k]
        if task.raw < DIRECT_FROM:  # a small file's pieces: nothing to skip, none looked at
            return write_at(task.fd, task.extents, pos, piece, sink)
        zero = self._zeros.learn(task.chunks[k][0], piece)
        if not task.reserved:
            return write_at(task.fd, task.extents, pos, piece, sink)
        if not zero:
            view = memoryview(piece)
            for lo, hi in data_runs(view, pos):
                write_at(task.fd, task.extents, pos + lo, view[lo:hi], sink)
        return content_end(task.extents, pos, len(piece))

    def _open(self, task: FileTask) -> bool:
        """Create the temporary file (once for a big file's slices); False if it failed."""
        if task.pieces == 1:
            self._create(task)
        else:
            with self._lock:
                if task.fd < 0 and task.failure is None:
                    self._create(task)
        return task.fd >= 0 and task.failure is None

    def _create(self, task: FileTask) -> None:
        fresh = self._names.fresh(task.tmp)
        mode = 0o600 if fresh is None else create_mode(task.entry.node)
        try:
            if task.made:
                task.fd = _open_made(task.tmp)
            elif not self._create_unnamed(task, mode):
                task.fd = on_path(os.open, task.tmp, _CREATE_FLAGS, mode)
        except OSError as exc:
            task.failure = self._os_reason(task, exc, "cannot create file")
            return
        self.live.add(task)
        task.fresh = fresh
        if task.raw >= DIRECT_FROM:
            task.direct_fd = open_direct(task.fd)
        if task.direct_fd >= 0:
            try:
                # zeros are skipped only in a file that held nothing (one made empty by
                # another writer is checked: whatever it held would show through)
                empty = not task.made or os.fstat(task.fd).st_size == 0
                task.reserved = reserve(task.fd, task.extents) and empty
            except OSError as exc:
                task.failure = self._os_reason(task, exc, "cannot allocate")

    def _create_unnamed(self, task: FileTask, mode: int) -> bool:
        """Create the file without a name (``O_TMPFILE``) in the folder of its temporary
        name, to be linked into place once durable (``placing.link_into_place``): creating
        and renaming a small file cost 64 us of kernel time on ext4, creating and linking
        it 45 us (docs/benchmarks.md, "Session 20").  A file killed before its link leaves
        nothing behind.  Only for a file the plan creates (one it replaces is renamed over
        the old); False where the kernel or file system has no ``O_TMPFILE`` (the writer
        then names its files, as before)."""
        if not self._unnamed or task.entry.action != CREATE or task.in_place:
            return False
        try:
            task.fd = on_path(os.open, os.path.dirname(task.tmp), _UNNAMED_FLAGS, mode)
        except OSError as exc:
            if exc.errno not in _NO_UNNAMED:
                raise
            self._unnamed = False
            return False
        task.unnamed = True
        return True

    def _buffered_big(self, task: FileTask) -> bool:
        """A durable restore's finished file big enough to go direct that could not (a file
        system without O_DIRECT): its write-back starts now, so the batch's syncfs waits for
        less (placing.start_writeback; the text files above: 2.4 -> 1.9 s before direct
        writes took over).  Smaller files are left to the syncfs, which writes a folder of
        them in fewer, larger requests."""
        big = task.raw >= DIRECT_FROM
        return self._writeback and big and task.failure is None and task.direct_fd < 0

    def _last_piece(self, task: FileTask) -> bool:
        if task.pieces == 1:
            return True
        with self._lock:
            task.left -= 1
            return task.left == 0

    # --- the whole file ----------------------------------------------------------------------

    def _finish(self, task: FileTask) -> FileTask:
        """Size, verification and metadata, then close; a failed file's temp file goes."""
        if task.fd >= 0 and task.failure is None:
            self._settle(task)
            if self._buffered_big(task):
                start_writeback(task.fd)
        _close_direct(task)
        if task.failure is not None and task in self.live:
            _discard(task)
            self.live.discard(task)
        elif task.fd >= 0 and not task.unnamed:  # an unnamed file is closed once linked
            os.close(task.fd)
            task.fd = -1
        # Done with them: the task waits for its rename, and the fewer objects that wait, the
        # less the garbage collector has to look at.
        task.chunks = task.starts = ()
        return task

    def _settle(self, task: FileTask) -> None:
        node = task.entry.node
        try:
            if task.end != node.size:  # trailing holes, or content shorter than the size
                os.ftruncate(task.fd, node.size)
        except OSError as exc:
            task.failure = self._os_reason(task, exc, "cannot set size")
            return
        if self._verify:
            if not self._check(task):
                task.failure = "verification failed: the written data differs from the point"
                return
            task.verified = True
        issues: list[str] = []
        apply_metadata(task.fd, node, as_root=self._as_root, issue=issues.append, fresh=task.fresh)
        task.issues = issues or None

    def _check(self, task: FileTask) -> bool:
        """Read the file back and compare every chunk's keyed hash with its id."""
        lengths = [entry.raw if entry is not None else 0 for _, entry in task.chunks]
        reader = ExtentReader(task.fd, task.extents)
        view = memoryview(bytearray(max(lengths, default=0)))
        for (cid, _), length in zip(task.chunks, lengths, strict=True):
            got = 0
            while got < length:
                n = reader.readinto(view[got:length])
                if n == 0:
                    return False
                got += n
            if self._vault.chunk_id(view[:length]) != cid:
                return False
        return True

    @staticmethod
    def _os_reason(task: FileTask, exc: OSError, what: str) -> str:
        if exc.errno in _NO_SPACE:
            raise FilesError(f"no space left on device while restoring {task.show}") from None
        return f"{what}: {exc.strerror}"

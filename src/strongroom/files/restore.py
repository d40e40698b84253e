"""File-level restore: plan, create directories, write files, link, then directory metadata.

Every file is written under a temporary name (``.strongroom-tmp-*``) in its destination
folder, gets its xattrs, ACLs, owner, mode and times on the open descriptor, and is renamed into
place only after its data is durable (``syncfs`` on the target, once per batch of files rather
than one ``fsync`` per file): nothing half-written ever carries a final name.  Chunks are
fetched and decrypted in parallel in the order of the packs that hold them; sparse files get
their holes back.  Hard links are made after the files they point to; directory metadata is
applied last, children before parents.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strongroom.errors import FilesError, StrongroomError
from strongroom.files.content import ExtentReader
from strongroom.files.fetch import ExtentWriter, Fetched, fetch_ordered
from strongroom.files.metadata import apply_metadata, ifmt_of
from strongroom.files.nodes import DIR, FIFO, FILE, SYMLINK, TEMP_PREFIX, Node
from strongroom.files.plan import CREATE, KEEP_BOTH, REPLACE, SKIP_META, Entry, Plan, Planner
from strongroom.files.tree import TreeReader, root_node
from strongroom.storage import LocalBackend
from strongroom.vault import RecoveryPoint, Vault

_COMMIT_FILES = 2000
_COMMIT_BYTES = 512 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

Progress = Callable[[int, int, str], None]


@dataclass
class RestoreOptions:
    target: str | Path
    selectors: Sequence[str] = ()
    on_conflict: str = "overwrite"
    dry_run: bool = False
    verify: bool = False
    workers: int = 3
    durable: bool = True


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
    duration: float = 0.0

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
            "duration": round(self.duration, 3),
        }


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _syncfs(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "syncfs", None)
    if fn is None or fn(fd) != 0:
        os.sync()


def prepare_target(target: str | Path, vault: Vault, dry_run: bool) -> tuple[bytes, bool]:
    """The absolute target, created and checked writable; and whether it already had entries."""
    t = os.path.abspath(os.fsencode(target))
    if isinstance(vault.backend, LocalBackend):
        root = os.path.realpath(os.fsencode(vault.backend.root))
        real = os.path.realpath(t)
        if real == root or real.startswith(root + b"/"):
            raise FilesError(f"restore target {_show(t)} is inside the vault")
    if os.path.lexists(t):
        if not os.path.isdir(t):
            raise FilesError(f"restore target {_show(t)} is not a directory")
    elif dry_run:
        return t, False
    else:
        try:
            os.makedirs(t)
        except OSError as exc:
            raise FilesError(f"cannot create restore target {_show(t)}: {exc.strerror}") from None
    probe = os.path.join(t, TEMP_PREFIX + b"probe-" + secrets.token_hex(4).encode())
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise FilesError(f"restore target {_show(t)} is not writable: {exc.strerror}") from None
    with os.scandir(t) as it:
        return t, any(True for _ in it)


def _check_space(target: bytes, plan: Plan) -> None:
    need = sum(
        sum(n for _, n in e.node.data_extents())
        for e in plan.entries
        if e.node.kind == FILE and e.link_to is None
    )
    st = os.statvfs(target)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise FilesError(
            f"not enough space in {_show(target)}: the restore needs {need} bytes, {free} are free"
        )


class _Executor:
    def __init__(
        self, vault: Vault, opts: RestoreOptions, target: bytes, summary: RestoreSummary
    ) -> None:
        self.vault, self.opts, self.target, self.summary = vault, opts, target, summary
        self.token = secrets.token_hex(4).encode()
        self.counter = 0
        self.as_root = os.geteuid() == 0
        self.pending: list[tuple[bytes, Entry]] = []
        self.pending_bytes = 0
        self.done: set[bytes] = set()
        self.dirs: list[Entry] = []
        self.progress: Progress | None = None
        self.written = 0

    def _tmp(self, dest: bytes) -> bytes:
        self.counter += 1
        name = TEMP_PREFIX + self.token + b"-" + str(self.counter).encode()
        return os.path.join(os.path.dirname(dest), name)

    def _fail(self, e: Entry, reason: str) -> None:
        self.summary.errors.append((_show(e.dest), reason))

    def _issue(self, e: Entry) -> Callable[[str], None]:
        return lambda reason: self._fail(e, reason)

    def _rename_into_place(self, tmp: bytes, e: Entry) -> bool:
        """The last step of every entry: a failed rename leaves no temp file behind."""
        try:
            os.rename(tmp, e.dest)
        except OSError as exc:
            self._fail(e, f"cannot rename into place: {exc.strerror}")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        return True

    def run(self, plan: Plan) -> None:
        files: list[Entry] = []
        links: list[Entry] = []
        try:
            for e in plan.entries:
                kind = e.node.kind
                if kind == DIR:
                    self._dir(e)
                elif kind == FILE:
                    (links if e.link_to is not None else files).append(e)
                else:
                    self._special(e)
            self._contents(files)
            self._commit()
        except BaseException:
            for tmp, _ in self.pending:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        for e in links:
            self._link(e)
        for e in reversed(self.dirs):
            apply_metadata(e.dest, e.node, as_root=self.as_root, issue=self._issue(e))

    # --- directories, special files and links ----------------------------------------------

    def _dir(self, e: Entry) -> None:
        try:
            if e.action == REPLACE:
                os.unlink(e.dest)
            if e.action in (CREATE, REPLACE, KEEP_BOTH):
                try:
                    os.mkdir(e.dest, 0o700)
                except FileExistsError:
                    if not os.path.isdir(e.dest):
                        raise
        except OSError as exc:
            self._fail(e, f"cannot create directory: {exc.strerror}")
            return
        self.summary.dirs += 1
        if e.action != SKIP_META:
            self.dirs.append(e)

    def _special(self, e: Entry) -> None:
        node = e.node
        tmp = self._tmp(e.dest)
        try:
            if node.kind == SYMLINK:
                os.symlink(node.target or b"", tmp)
            elif node.kind == FIFO:
                os.mkfifo(tmp, 0o600)
            else:
                os.mknod(tmp, 0o600 | ifmt_of(node.kind), node.rdev)
        except OSError as exc:
            self._fail(e, f"cannot create {node.kind}: {exc.strerror}")
            return
        apply_metadata(tmp, node, as_root=self.as_root, issue=self._issue(e))
        if self._rename_into_place(tmp, e):
            self.summary.others += 1

    def _link(self, e: Entry) -> None:
        assert e.link_to is not None
        if e.link_to not in self.done:
            self._fail(e, f"hard link target {_show(e.link_to)} was not restored")
            return
        tmp = self._tmp(e.dest)
        try:
            os.link(e.link_to, tmp)
            os.rename(tmp, e.dest)
        except OSError as exc:
            self._fail(e, f"cannot create hard link: {exc.strerror}")
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self.summary.links += 1

    # --- file contents ---------------------------------------------------------------------

    def _location(self, pack_pos: dict[bytes, int], e: Entry) -> tuple[int, int]:
        if not e.node.chunks:
            return (-1, 0)
        entry = self.vault.index.lookup(e.node.chunks[0])
        if entry is None:
            return (1 << 62, 0)
        return (pack_pos.get(entry.pack, 0), entry.offset)

    def _contents(self, files: list[Entry]) -> None:
        pack_pos = {pid: i for i, pid in enumerate(self.vault.index.pack_ids)}
        files.sort(key=lambda e: self._location(pack_pos, e))
        index = self.vault.index

        def sized(cid: bytes) -> tuple[bytes, int]:
            entry = index.lookup(cid)
            return cid, entry.raw if entry is not None else 0

        ids = (sized(c) for e in files for c in e.node.chunks)
        stream = fetch_ordered(self.vault.read_chunk, ids, self.opts.workers)
        try:
            for e in files:
                self._file(e, stream)
        finally:
            stream.close()

    def _file(self, e: Entry, stream: Iterator[Fetched]) -> None:
        node = e.node
        pieces = (next(stream) for _ in node.chunks)
        tmp = self._tmp(e.dest)
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            for _ in pieces:
                pass
            self._os_failure(e, exc, "cannot create file")
            return
        try:
            ok = self._write(fd, e, pieces)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self.pending.append((tmp, e))
        self.pending_bytes += node.size
        if len(self.pending) >= _COMMIT_FILES or self.pending_bytes >= _COMMIT_BYTES:
            self._commit()
        self.written += 1
        if self.progress is not None:
            self.progress(self.written, self.summary.bytes_written, _show(e.dest))

    def _write(self, fd: int, e: Entry, pieces: Iterator[Fetched]) -> bool:
        """Content, verification and metadata; False (error recorded) if the file failed."""
        node = e.node
        writer = ExtentWriter(fd, node.data_extents())
        lengths: list[int] = []
        failure: str | None = None
        for piece in pieces:
            if isinstance(piece, StrongroomError):
                failure = failure or f"cannot read its data: {piece}"
                continue
            if failure is None:
                try:
                    writer.write(piece)
                except OSError as exc:
                    failure = self._os_failure(e, exc, "cannot write")
                lengths.append(len(piece))
        if failure is not None:
            for _ in pieces:
                pass
            if not failure.startswith("cannot write"):
                self._fail(e, failure)
            return False
        try:
            if os.fstat(fd).st_size != node.size:
                os.ftruncate(fd, node.size)
        except OSError as exc:
            self._os_failure(e, exc, "cannot set size")
            return False
        if self.opts.verify and not self._verify(fd, node, lengths):
            self._fail(e, "verification failed: the written data differs from the point")
            return False
        apply_metadata(fd, node, as_root=self.as_root, issue=self._issue(e))
        self.summary.bytes_written += sum(lengths)
        return True

    def _os_failure(self, e: Entry, exc: OSError, what: str) -> str:
        if exc.errno in _NO_SPACE:
            raise FilesError(f"no space left on device while restoring {_show(e.dest)}") from None
        reason = f"{what}: {exc.strerror}"
        self._fail(e, reason)
        return reason

    def _verify(self, fd: int, node: Node, lengths: list[int]) -> bool:
        reader = ExtentReader(fd, node.data_extents())
        buf = bytearray(max(lengths, default=0))
        view = memoryview(buf)
        for cid, length in zip(node.chunks, lengths, strict=True):
            got = 0
            while got < length:
                n = reader.readinto(view[got:length])
                if n == 0:
                    return False
                got += n
            if self.vault.keys.chunk_id(view[:length]) != cid:
                return False
        self.summary.verified += 1
        return True

    def _commit(self) -> None:
        if not self.pending:
            return
        if self.opts.durable:
            fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                _syncfs(fd)
            finally:
                os.close(fd)
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        for tmp, e in pending:
            if not self._rename_into_place(tmp, e):
                continue
            self.done.add(e.dest)
            self.summary.files += 1
            if e.action == KEEP_BOTH:
                self.summary.kept_both.append(_show(e.dest))


def restore_files(
    vault: Vault, point: RecoveryPoint, opts: RestoreOptions, progress: Progress | None = None
) -> RestoreSummary:
    """Restore ``opts.selectors`` (all when empty) of ``point`` under ``opts.target``."""
    started = time.monotonic()
    root = root_node(point)
    target, had_entries = prepare_target(opts.target, vault, opts.dry_run)
    summary = RestoreSummary(point_id=point.point_id, target=_show(target))
    suffix = b".restored-" + point.short_id[:8].encode()
    with vault.lock():
        trees = TreeReader(vault)
        probe = had_entries or opts.dry_run
        plan = Planner(trees, target, opts.on_conflict, suffix, probe).build(root, opts.selectors)
        summary.errors.extend(plan.errors)
        summary.skipped.extend(_show(e.dest) for e in plan.skipped)
        if opts.dry_run:
            summary.actions = [(e.action, _show(e.dest)) for e in plan.entries]
        else:
            _check_space(target, plan)
            ex = _Executor(vault, opts, target, summary)
            ex.progress = progress
            ex.run(plan)
    summary.duration = time.monotonic() - started
    return summary

"""``find`` and ``diff`` inside image points, through the files engine's pattern and diff code.

Comparing two points file by file: kinds, then size (a different size is a change without
reading), then the content.  Reading both copies is what costs; so where a filesystem says
where a file's data lies (ext, XFS, FAT, NTFS on a partition or the bare disk), the file's
byte ranges on the disk and the chunk ids of the disk chunks under them are compared
first: same ranges and same chunk ids in both points mean the same bytes, without a fetch.
Otherwise (a file moved, a chunk shared with a changed neighbour, LVM/LUKS volumes, btrfs,
exFAT) both copies are read and compared.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from strongroom.chunking import CDCParams
from strongroom.errors import GuestFilesError
from strongroom.files.diff import Change, LiveTree, TreeDiffer, flatten_changes
from strongroom.files.nodes import DIR, FILE, SYMLINK, Node
from strongroom.files.patterns import PatternSet
from strongroom.files.selection import absolute
from strongroom.guestfiles.filesystems import Stream, damage_errors
from strongroom.guestfiles.reader import DiskReader
from strongroom.guestfiles.tree import GuestNode, GuestPoint, GuestTree
from strongroom.image.chunkmap import ChunkMap

__all__ = ["GuestDiff", "diff_guest_live", "diff_guest_points", "find_in_guest"]

_BLOCK = 1 << 20


def find_in_guest(trees: GuestTree, pattern: str) -> Iterator[tuple[bytes, Node]]:
    """(path, node) of every entry of every volume whose path matches ``pattern``."""
    globs = PatternSet([pattern])
    stack: list[tuple[bytes, Node]] = [(b"/", trees.root())]
    while stack:
        path, node = stack.pop()
        kids = trees.children(node)
        for kid in kids:
            kpath = os.path.join(path, kid.name)
            if globs.matches(kpath, kid.kind == DIR):
                yield kpath, kid
        stack.extend((os.path.join(path, k.name), k) for k in reversed(kids) if k.kind == DIR)


class _Contents:
    """Content comparison of guest files (see the module's docstring); counts what it did."""

    def __init__(self) -> None:
        self.by_chunk_ids = 0  # decided from chunk ids alone
        self.partly_read = 0  # only the chunks whose ids differ were read
        self.read = 0  # both copies read through their filesystems

    def differs(self, a: Node, b: Node) -> bool:
        if a.kind == SYMLINK:
            return a.target != b.target
        if a.kind != FILE:
            return a.rdev != b.rdev
        if a.size != b.size:
            return True
        assert isinstance(a, GuestNode) and isinstance(b, GuestNode)
        la, lb = _layout(a), _layout(b)
        if la is not None and lb is not None and la[0] == lb[0]:
            return self._by_chunks(la, lb)
        self.read += 1
        return not _same_stream(_open(a), _open(b))

    def _by_chunks(self, la: _Layout, lb: _Layout) -> bool:
        """Same places on the disk: compare chunk ids, read only the chunks that differ."""
        ranges, (ma, size), ra = la
        _, (mb, _), rb = lb
        read = False
        for start, length in ranges:
            for i in range(start // size, (start + length - 1) // size + 1):
                if ma.get(i) == mb.get(i):
                    continue
                lo, hi = max(start, i * size), min(start + length, (i + 1) * size)
                read = True
                if _pread(ra, lo, hi - lo) != _pread(rb, lo, hi - lo):
                    self.partly_read += 1
                    return True
        if read:
            self.partly_read += 1
        else:
            self.by_chunk_ids += 1
        return False


_Layout = tuple[list[tuple[int, int]], tuple[ChunkMap, int], DiskReader]


def _layout(node: GuestNode) -> _Layout | None:
    """The file's data as byte ranges on its disk (cut at its size), the disk's chunk map
    and reader; None when the filesystem or the volume cannot say."""
    guest, fs = node.guest, node.fs
    if guest is None or fs is None or node.volume is None:
        return None
    runs = getattr(fs, "volume_runs", None)
    base = guest.disk_offset(node.volume)
    if runs is None or base is None:
        return None
    found = runs(node.ref[1])
    if found is None:
        return None
    ranges, left = [], node.size
    for start, length in found:
        if left <= 0:
            break
        ranges.append((base + start, min(length, left)))
        left -= length
    return ranges, guest.chunk_map(node.disk), guest.disk_reader(node.disk)


def _pread(reader: DiskReader, offset: int, length: int) -> bytes:
    reader.seek(offset)
    return reader.read(length)


def _open(node: Node) -> Stream:
    assert isinstance(node, GuestNode) and node.fs is not None
    return node.fs.open(node.ref[1])


def _same_stream(a: Stream, b: Stream) -> bool:
    while True:
        x, y = a.read(_BLOCK), b.read(_BLOCK)
        if x != y:
            return False
        if not x:
            return True


class GuestDiff:
    """The outcome of :func:`diff_guest_points`: changes, and what could not be read."""

    def __init__(
        self, changes: list[Change], failures: list[tuple[str, str]], contents: _Contents
    ) -> None:
        self.changes, self.failures = changes, failures
        self.by_chunk_ids, self.read = contents.by_chunk_ids, contents.read
        self.partly_read = contents.partly_read


def diff_guest_points(old: GuestPoint, new: GuestPoint) -> GuestDiff:
    """Changes from ``old`` to ``new`` (every disk and volume), in path order."""
    ta, tb = GuestTree(old, strict=False), GuestTree(new, strict=False)
    contents = _Contents()
    differ = TreeDiffer(
        lambda _, n: ta.children(n), lambda _, n: tb.children(n),
        lambda _, a, b: _guarded(contents, a, b),
    )  # fmt: skip
    changes = list(flatten_changes(differ.tree(b"/", ta.root(), tb.root())))
    return GuestDiff(changes, [*ta.failures, *tb.failures], contents)


def _guarded(contents: _Contents, a: Node, b: Node) -> bool:
    try:
        return contents.differs(a, b)
    except damage_errors() as exc:
        where = a.where if isinstance(a, GuestNode) else b""
        raise GuestFilesError(f"{os.fsdecode(where)}: cannot be read: {exc}") from None


def diff_guest_live(guest: GuestPoint, inside: str, live: str) -> list[Change]:
    """Changes from the point's ``inside`` (``/DISK/VOLUME/PATH``) to the folder ``live``."""
    trees = GuestTree(guest, strict=True)
    old = trees.lookup(trees.root(), inside)
    if old is None:
        raise GuestFilesError(f"{inside}: not in recovery point {guest.point.short_id}")
    where = absolute(live)
    checker = LiveTree(guest.vault, CDCParams())
    try:
        now = checker.node(where)
    except OSError as exc:
        raise GuestFilesError(f"{live}: {exc.strerror}") from None
    if now is None:
        raise GuestFilesError(f"{live}: a socket cannot be compared")

    def content(path: bytes, a: Node, b: Node) -> bool:
        if a.kind != FILE or a.size != b.size:
            return a.kind == FILE or (a.target, a.rdev) != (b.target, b.rdev)
        with open(path, "rb") as f:
            return not _same_stream(_open(a), f)

    differ = TreeDiffer(lambda _, n: trees.children(n), checker.children, content)
    changes = list(flatten_changes(differ.entry(where, old, now)))
    if old.kind == DIR and now.kind == DIR:
        try:
            changes.extend(flatten_changes(differ.tree(where, old, now)))
        except OSError as exc:
            shown = os.fsdecode(exc.filename) if exc.filename else live
            raise GuestFilesError(f"{shown}: {exc.strerror or exc}") from None
    return changes

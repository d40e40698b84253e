"""What changed between two files recovery points, or between a point and the live tree.

Changes, per path: ``added``, ``removed``, ``type`` (the entry became something else),
``modified`` (content: a file's data or holes, a symlink's target, a device number) and
``metadata`` (mode, owner, mtime, xattrs/ACLs, inode flags; the changed fields are named).
atime is not compared (reading changes it), and neither is the mtime of a folder that only holds the
selected paths (``/tmp`` for ``backup files /tmp/x``): anything else put in it changes that
mtime, and its other metadata is still compared.  Entries under an added or removed
directory are listed one by one.  Between two points, identical subtrees (same tree chunk id)
are skipped without being read.  Against the live tree every file whose size matches is read
and its chunk ids computed with the vault's key and the point's chunker parameters, so
content changed behind an unchanged size and mtime (as ransomware may leave it) is still
found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from strongroom.chunking import CDCParams, ContentChunker
from strongroom.errors import FilesError
from strongroom.files.content import ContentReader, open_for_reading
from strongroom.files.longpath import Folder
from strongroom.files.metadata import Names, node_from_stat, read_flags_at, read_xattrs
from strongroom.files.nodes import DIR, FILE, SYMLINK, TEMP_PREFIX, Node
from strongroom.files.selection import absolute
from strongroom.files.tree import TreeReader, root_node
from strongroom.files.vaultview import DiffVault
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint

ADDED = "added"
REMOVED = "removed"
TYPE = "type"
MODIFIED = "modified"
METADATA = "metadata"
_META_FIELDS = ("mode", "uid", "gid", "mtime_ns", "xattrs", "flags")


@dataclass(frozen=True)
class Change:
    path: str
    change: str
    fields: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "change": self.change, "fields": list(self.fields)}


Children = Callable[[bytes, Node], list[Node]]
Content = Callable[[bytes, Node, Node], bool]


def _content_differs(a: Node, b: Node) -> bool:
    if a.kind == FILE:
        return (a.size, a.chunks, a.extents) != (b.size, b.chunks, b.extents)
    if a.kind == SYMLINK:
        return a.target != b.target
    return a.rdev != b.rdev


def _meta_differs(a: Node, b: Node) -> tuple[str, ...]:
    return tuple(f for f in _META_FIELDS if getattr(a, f) != getattr(b, f))


Step = Iterator["Change | Step"]


def flatten_changes(top: Step) -> Iterator[Change]:
    """The changes of ``top`` and of every step it hands out, in order.  Steps are run from
    an explicit stack, so a tree 1,000 folders deep does not exhaust Python's stack."""
    stack = [top]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, Change):
            yield item
        else:
            stack.append(item)


class TreeDiffer:
    """Compares two trees; each method is a step yielding changes and sub-steps."""

    def __init__(self, kids_a: Children, kids_b: Children, content: Content) -> None:
        self.kids_a, self.kids_b, self.content = kids_a, kids_b, content

    def entry(self, path: bytes, a: Node, b: Node) -> Step:
        shown = os.fsdecode(path)
        if a.kind != b.kind:
            yield Change(shown, TYPE, (a.kind, b.kind))
            return
        if a.kind != DIR and self.content(path, a, b):
            yield Change(shown, MODIFIED)
        else:
            fields = _meta_differs(a, b)
            if fields:
                yield Change(shown, METADATA, fields)

    def tree(self, path: bytes, a: Node, b: Node) -> Step:
        if a.subtree is not None and a.subtree == b.subtree:
            return
        left = {n.name: n for n in self.kids_a(path, a)}
        right = {n.name: n for n in self.kids_b(path, b)}
        for name in sorted(left.keys() | right.keys()):
            sub = os.path.join(path, name)
            na, nb = left.get(name), right.get(name)
            if nb is None:
                assert na is not None
                yield self.all(sub, na, self.kids_a, REMOVED)
            elif na is None:
                yield self.all(sub, nb, self.kids_b, ADDED)
            else:
                yield self.entry(sub, na, nb)
                if na.kind == DIR and nb.kind == DIR:
                    yield self.tree(sub, na, nb)
                elif na.kind == DIR:
                    yield self.all_below(sub, na, self.kids_a, REMOVED)
                elif nb.kind == DIR:
                    yield self.all_below(sub, nb, self.kids_b, ADDED)

    def all(self, path: bytes, node: Node, kids: Children, change: str) -> Step:
        yield Change(os.fsdecode(path), change)
        yield self.all_below(path, node, kids, change)

    def all_below(self, path: bytes, node: Node, kids: Children, change: str) -> Step:
        if node.kind == DIR:
            for kid in kids(path, node):
                yield self.all(os.path.join(path, kid.name), kid, kids, change)


def diff_points(vault: DiffVault, old: RecoveryPoint, new: RecoveryPoint) -> list[Change]:
    """Changes from ``old`` to ``new``, in path order."""
    trees = TreeReader(vault)

    def kids(_: bytes, node: Node) -> list[Node]:
        return trees.children(node)

    differ = TreeDiffer(kids, kids, lambda _, a, b: _content_differs(a, b))
    changes = flatten_changes(differ.tree(b"/", root_node(old), root_node(new)))
    return _without_ancestor_mtimes(changes, [old, new])


def _ancestors(points: list[RecoveryPoint]) -> set[str]:
    """The folders above the points' selected paths (not selected themselves)."""
    found: set[str] = set()
    for p in points:
        for selected in p.manifest.meta.get("paths") or []:
            if not isinstance(selected, str):
                continue
            here, up = selected, os.path.dirname(selected)
            while up not in found and up != here:
                found.add(up)
                here, up = up, os.path.dirname(up)
    for p in points:
        found.difference_update(x for x in p.manifest.meta.get("paths") or [] if isinstance(x, str))
    return found


def _without_ancestor_mtimes(
    changes: Iterator[Change], points: list[RecoveryPoint]
) -> list[Change]:
    above = _ancestors(points)
    return [
        c
        for c in changes
        if not (c.change == METADATA and c.fields == ("mtime_ns",) and c.path in above)
    ]


def _flags(path: bytes) -> int:
    try:
        return read_flags_at(path)
    except OSError:  # not readable: the backup records none either
        return 0


class LiveTree:
    """Nodes of the live file system, built the way a backup builds them."""

    def __init__(self, vault: DiffVault, params: CDCParams) -> None:
        self.names = Names()
        self.reader = ContentReader(ContentChunker(params), vault.chunk_id)

    def _entry(self, folder: Folder, name: bytes) -> Node | None:
        node = node_from_stat(name, folder.lstat(name), self.names)
        if node is not None:
            reach = folder.reach(name, folder.join(name))
            node.xattrs = read_xattrs(reach)
            if node.kind == SYMLINK:
                node.target = folder.readlink(name)
            elif node.kind in (FILE, DIR):
                node.flags = _flags(reach)
        return node

    def node(self, path: bytes) -> Node | None:
        if path == b"/":
            top = node_from_stat(b"", os.lstat(path), self.names)
            if top is not None:
                top.xattrs = read_xattrs(path)
            return top
        with Folder(os.path.dirname(path)) as folder:
            return self._entry(folder, os.path.basename(path))

    def children(self, path: bytes, _: Node) -> list[Node]:
        found = []
        with Folder(path) as folder:
            names = sorted(n for n, _ in folder.scandir() if not n.startswith(TEMP_PREFIX))
            for name in names:
                try:
                    node = self._entry(folder, name)
                except FileNotFoundError:
                    continue
                if node is not None:
                    found.append(node)
        return found

    def content_differs(self, path: bytes, old: Node, live: Node) -> bool:
        if old.kind != FILE or old.size != live.size:
            return _content_differs(old, live)
        fd = open_for_reading(path)
        try:
            got = self.reader.read(fd, os.fstat(fd))
        finally:
            os.close(fd)
        return (got.chunks, got.extents) != (old.chunks, old.extents)


def _params(point: RecoveryPoint) -> CDCParams:
    c = point.manifest.meta.get("chunker") or {}
    try:
        return CDCParams(int(c["min"]), int(c["avg"]), int(c["max"]))
    except (KeyError, TypeError, ValueError):
        return CDCParams()


def diff_live(vault: DiffVault, point: RecoveryPoint, path: str) -> list[Change]:
    """Changes from ``point``'s copy of ``path`` to what is at ``path`` now."""
    if not path:
        raise FilesError("an empty path names nothing (give . for the current folder)")
    where = absolute(path)
    trees = TreeReader(vault)
    old = trees.lookup(root_node(point), where)
    if old is None:
        raise FilesError(f"{path}: not in recovery point {point.short_id}")
    live = LiveTree(vault, _params(point))
    try:
        now = live.node(where)
    except OSError as exc:
        raise FilesError(f"{path}: {exc.strerror}") from None
    if now is None:
        raise FilesError(f"{path}: a socket cannot be compared")
    differ = TreeDiffer(lambda _, n: trees.children(n), live.children, live.content_differs)
    changes = _without_ancestor_mtimes(flatten_changes(differ.entry(where, old, now)), [point])
    if old.kind == DIR and now.kind == DIR:
        try:
            changes.extend(
                _without_ancestor_mtimes(flatten_changes(differ.tree(where, old, now)), [point])
            )
        except OSError as exc:  # a folder or file below that cannot be read
            shown = os.fsdecode(exc.filename) if exc.filename else path
            raise FilesError(f"{shown}: {exc.strerror or exc}") from None
    return changes

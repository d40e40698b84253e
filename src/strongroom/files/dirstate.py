"""A folder in flight in a files backup's walk (files/walker.py), and the folder-row rules
that look at one (files/foldercache.py)."""

from __future__ import annotations

import os

from strongroom.files.cacherows import CacheRow
from strongroom.files.foldercache import FolderRow
from strongroom.files.nodes import DIR, FILE, Node


class DirState:
    """A directory being backed up: its nodes, and how many children are still in flight."""

    __slots__ = (
        "children",
        "clean",
        "depth",
        "dev",
        "digest",
        "entries",
        "error",
        "gone",
        "kept",
        "leaf",
        "listed",
        "meta",
        "node",
        "nodes",
        "parent",
        "path",
        "pending",
        "reusable",
        "reuse",
        "rows",
        "touch",
        "tree_id",
    )

    def __init__(self, path: bytes, node: Node | None, parent: DirState | None) -> None:
        self.path, self.node, self.parent = path, node, parent
        self.nodes: list[Node] = []
        self.pending = 0
        self.listed = False
        self.rows: list[bytes] = []  # new or changed records for the files cache (encoded)
        self.kept: list[bytes] = []  # the cache records of files whose rows matched
        self.touch = False  # whether the files cache's rows for this directory need news
        self.gone = False  # whether some cached names are no longer files here
        self.depth = 0  # below the nearest selected path
        self.leaf = False  # has no subfolders (its link count says so, where it can)
        self.dev = -1  # the device a one-file-system walk stays on (-1: any)
        self.tree_id: bytes | None = None  # once written (or reused)
        self.error: str | None = None  # why it could not be listed
        # its node's xattrs and inode flags are still to be read: from the descriptor it is
        # listed through (TreeWalker._own_meta), not by path from its parent's listing
        self.meta = False
        # the folder cache (foldercache.py): whether this folder may have a row, the lstat
        # results its row's digest covers, whether every entry was recorded without a doubt,
        # and, for a folder whose row matched, that row and its subfolders' states
        self.reusable = True
        self.entries: list[tuple[bytes, os.stat_result]] | None = None  # (a matched row's)
        self.digest: bytes | None = None  # of the entries, for a row: taken once it is built
        self.clean = True
        self.reuse: FolderRow | None = None
        self.children: dict[bytes, DirState] = {}


def row_fits(row: CacheRow | None, st: os.stat_result | None) -> bool:
    """Whether a file's new cache row is of the very ``lstat`` the walker listed."""
    if row is None or st is None:
        return False
    return row[2:6] == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def subfolders_match(d: DirState, row: FolderRow) -> bool:
    """Whether the subfolders of a folder whose entries matched ``row`` ended with the trees
    the row names, each listed without an error."""
    for name, tree in row.subs:
        sub = d.children.get(name)
        if sub is None or sub.tree_id != tree or sub.error is not None:
            return False
    return len(d.children) == len(row.subs)


RowParts = tuple[list[tuple[bytes, bytes]], list[bytes], tuple[int, int, int]]


def row_parts(nodes: list[Node]) -> RowParts | None:
    """A built folder's subfolders (name, tree id), its files' chunk ids and its counts
    (files, others, bytes); None if a subfolder's listing is incomplete."""
    subs: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    files = others = nbytes = 0
    for n in nodes:
        if n.kind == DIR:
            if n.error is not None or n.subtree is None:
                return None
            subs.append((n.name, n.subtree))
        elif n.kind == FILE:
            files += 1
            nbytes += n.size
            chunks += n.chunks
        else:
            others += 1
    return subs, chunks, (files, others, nbytes)

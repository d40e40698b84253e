"""Restore planning: which nodes of a point go where, and what to do about what is there.

A selector without glob characters names one path in the point (it and everything below it
is restored; a path that is not in the point is an error); a selector with glob characters
follows :mod:`strongroom.files.patterns` and takes every matching entry with its subtree.  The
parent directories of what is selected are restored too (with their metadata).  A node at
point path ``/a/b`` goes to ``TARGET/a/b``.

Conflicts (something already at the destination) are decided here, before anything is
written: ``overwrite`` replaces it (a directory is never replaced by a non-directory: that is
reported as an error), ``skip`` leaves it, ``keep-both`` restores next to it as
``NAME.restored-<short point id>``.  An existing directory where the point has a directory is
always merged into; only ``overwrite`` applies the point's metadata to it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import field

from strongroom.errors import FilesError
from strongroom.files.longpath import on_path
from strongroom.files.nodes import DIR, FILE, Node
from strongroom.files.patterns import PatternSet, has_magic
from strongroom.files.tree import TreeReader, split_path
from strongroom.records import dataclass

CONFLICT_POLICIES = ("overwrite", "skip", "keep-both")

CREATE = "create"
REPLACE = "overwrite"
MERGE = "merge"
KEEP_BOTH = "keep-both"
SKIP = "skip"
SKIP_META = "exists"


@dataclass(slots=True)
class Entry:
    """A node to restore and where it goes: ``name`` in ``folder`` (the destination's parent;
    the entries of one directory share it, a restore holds one entry for each file)."""

    folder: bytes
    name: bytes
    node: Node
    action: str
    link_to: bytes | None = None  # a hard link to this (already restored) destination
    place: int = -1  # where a file's first chunk is (a fetch.Place): set when files are sorted

    @property
    def dest(self) -> bytes:
        return os.path.join(self.folder, self.name)


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    skipped: list[Entry] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def _tops(trees: TreeReader, root: Node, selectors: Sequence[str]) -> list[tuple[bytes, Node]]:
    """The selected (path, node) pairs, none inside another."""
    if not selectors:
        return [(b"/", root)]
    if any(not s for s in selectors):
        raise FilesError("an empty path names nothing in the point (give / for all of it)")
    found: dict[bytes, Node] = {}
    literal = [s for s in selectors if not has_magic(s)]
    globs = PatternSet(s for s in selectors if has_magic(s))
    for sel in literal:
        parts = split_path(sel)
        node = trees.lookup(root, b"/".join(parts))
        if node is None:
            raise FilesError(f"{sel}: not in this recovery point")
        found[b"/" + b"/".join(parts)] = node
    if globs:
        hits = 0
        for path, node in _glob_walk(trees, root, globs):
            found[path] = node
            hits += 1
        if not hits:
            shown = ", ".join(p.text for p in globs.patterns)
            raise FilesError(f"no path in this recovery point matches {shown}")
    ordered = sorted(found.items())
    kept: list[tuple[bytes, Node]] = []
    for path, node in ordered:
        if any(_inside(path, p) for p, _ in kept):
            continue
        kept.append((path, node))
    return kept


def _inside(path: bytes, parent: bytes) -> bool:
    return parent in (b"/", path) or path.startswith(parent + b"/")


def _glob_walk(trees: TreeReader, root: Node, globs: PatternSet) -> list[tuple[bytes, Node]]:
    hits: list[tuple[bytes, Node]] = []
    stack: list[tuple[bytes, Node]] = [(b"/", root)]
    while stack:
        path, node = stack.pop()
        for kid in trees.children(node):
            kpath = os.path.join(path, kid.name)
            if globs.matches(kpath, kid.kind == DIR):
                hits.append((kpath, kid))
            elif kid.kind == DIR:
                stack.append((kpath, kid))
    return hits


class Planner:
    def __init__(
        self, trees: TreeReader, target: bytes, policy: str, suffix: bytes, probe: bool = True
    ) -> None:
        if policy not in CONFLICT_POLICIES:
            raise FilesError(f"unknown conflict policy {policy!r}")
        self.trees, self.target, self.policy, self.suffix = trees, target, policy, suffix
        self.plan = Plan()
        # For every planned directory: its destination, and whether we create it (so nothing
        # below it can be in the way); None marks a skipped directory.
        self.dirs: dict[bytes, tuple[bytes, bool] | None] = {b"/": (target, not probe)}
        self.links: dict[str, bytes] = {}

    def build(self, root: Node, selectors: Sequence[str]) -> Plan:
        for top_path, top in _tops(self.trees, root, selectors):
            self._ancestors(root, top_path)
            for path, node in self.trees.walk(top, top_path):
                if path != b"/":
                    self._add(path, node)
        return self.plan

    def _ancestors(self, root: Node, path: bytes) -> None:
        node, sofar = root, b""
        for part in split_path(path)[:-1]:
            sofar += b"/" + part
            found = next(n for n in self.trees.children(node) if n.name == part)
            if sofar not in self.dirs:
                self._add(sofar, found)
            node = found

    def _add(self, src: bytes, node: Node) -> None:
        parent = self.dirs.get(os.path.dirname(src))
        if parent is None:  # below a skipped directory
            if node.kind == DIR:
                self.dirs[src] = None
            return
        folder, fresh = parent
        name, action = node.name, CREATE
        if not fresh:
            dest = os.path.join(folder, name)
            action = self._conflict(dest, node)
            if action == KEEP_BOTH:
                name = os.path.basename(self._free_name(dest))
        entry = Entry(folder, name, node, action)
        if action == SKIP:
            self.plan.skipped.append(entry)
            if node.kind == DIR:
                self.dirs[src] = None
            return
        if node.kind == DIR:
            self.dirs[src] = (entry.dest, action in (CREATE, KEEP_BOTH))
        elif node.kind == FILE and node.link is not None:
            first = self.links.get(node.link)
            if first is None:
                self.links[node.link] = entry.dest
            else:
                entry.link_to = first
        self.plan.entries.append(entry)

    def _conflict(self, dest: bytes, node: Node) -> str:
        try:
            st = on_path(os.lstat, dest)
        except FileNotFoundError:
            return CREATE
        except OSError as exc:
            raise FilesError(f"{os.fsdecode(dest)}: {exc.strerror}") from None
        existing_dir = stat.S_ISDIR(st.st_mode)
        if existing_dir and node.kind == DIR:
            return MERGE if self.policy == "overwrite" else SKIP_META
        if self.policy == "skip":
            return SKIP
        if self.policy == "keep-both":
            return KEEP_BOTH
        if existing_dir:
            self.plan.errors.append(
                (os.fsdecode(dest), "a directory is in the way (not replaced by a non-directory)")
            )
            return SKIP
        return REPLACE

    def _free_name(self, dest: bytes) -> bytes:
        candidate = dest + self.suffix
        n = 1
        while on_path(os.path.lexists, candidate):
            n += 1
            candidate = dest + self.suffix + b"-" + str(n).encode()
        return candidate

"""Browsing files recovery points: ``ls`` inside one point, ``find`` across points."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from strongroom.errors import FilesError
from strongroom.files.metadata import mode_string
from strongroom.files.nodes import DIR, KIND_NAMES, Node
from strongroom.files.patterns import PatternSet
from strongroom.files.tree import TreeReader, root_node, split_path
from strongroom.files.vaultview import TreeSource
from strongroom.vault import RecoveryPoint


def list_point(
    vault: TreeSource, point: RecoveryPoint, path: str = "/", recursive: bool = False
) -> Iterator[tuple[bytes, Node]]:
    """(path, node) of what is at ``path``: a directory's entries, or the entry itself."""
    trees = TreeReader(vault)
    where = b"/" + b"/".join(split_path(path))
    node = trees.lookup(root_node(point), where)
    if node is None:
        raise FilesError(f"{path}: not in recovery point {point.short_id}")
    if node.kind != DIR:
        yield where, node
        return
    if recursive:
        walk = trees.walk(node, where)
        next(walk)
        yield from walk
        return
    for kid in trees.children(node):
        yield os.path.join(where, kid.name), kid


def find_in_points(
    vault: TreeSource, points: Iterable[RecoveryPoint], pattern: str
) -> Iterator[tuple[RecoveryPoint, bytes, Node]]:
    """Every (point, path, node) whose path matches ``pattern`` (see ``patterns``)."""
    globs = PatternSet([pattern])
    trees = TreeReader(vault)
    memo: dict[tuple[bytes, bytes], list[tuple[bytes, Node]]] = {}

    def search(path: bytes, node: Node) -> list[tuple[bytes, Node]]:
        """Hits below ``node``; a subtree met again at the same path (in another point) is
        answered from ``memo``.  An explicit stack: a tree may be 1,000s of folders deep."""
        assert node.subtree is not None
        top: list[tuple[bytes, Node]] = []
        stack = [((node.subtree, path), path, top, iter(trees.children(node)))]
        while stack:
            key, here, hits, kids = stack[-1]
            kid = next(kids, None)
            if kid is None:
                stack.pop()
                memo[key] = hits
                if stack:
                    stack[-1][2].extend(hits)
                continue
            kpath = os.path.join(here, kid.name)
            if globs.matches(kpath, kid.kind == DIR):
                hits.append((kpath, kid))
            if kid.kind == DIR and kid.subtree is not None:
                below = memo.get((kid.subtree, kpath))
                if below is not None:
                    hits.extend(below)
                else:
                    stack.append(((kid.subtree, kpath), kpath, [], iter(trees.children(kid))))
        return top

    for point in points:
        if point.manifest.kind != "files":
            continue
        root = root_node(point)
        assert root.subtree is not None
        found = memo.get((root.subtree, b"/"))
        for path, node in found if found is not None else search(b"/", root):
            yield point, path, node


_ESCAPES = {c: "\\" + e for c, e in zip("\a\b\t\n\v\f\r\\", "abtnvfr\\", strict=True)}


def shown_path(path: bytes | str) -> str:
    """A path for a one-line-per-entry listing, escaped as GNU ``ls -b`` does: ``\\n``,
    ``\\t`` and the other C escapes, a backslash doubled, any other unprintable character
    and any byte that is not UTF-8 as ``\\ooo`` (octal, per byte).  ``--json`` keeps exact
    names instead."""
    text = os.fsdecode(path)
    if text.isprintable() and "\\" not in text:  # the common case: nothing to escape
        return text
    out = []
    for ch in text:
        if ch.isprintable() and ch != "\\":
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:  # a lone surrogate is the byte surrogateescape kept
            out.extend(f"\\{b:03o}" for b in os.fsencode(ch))
    return "".join(out)


def node_doc(path: bytes, node: Node) -> dict[str, Any]:
    """A JSON-friendly description of one entry."""
    doc: dict[str, Any] = {
        "path": os.fsdecode(path),
        "type": KIND_NAMES[node.kind],
        "mode": f"{node.mode:04o}",
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "size": node.size,
        "mtime_ns": node.mtime_ns,
    }
    if node.target is not None:
        doc["target"] = os.fsdecode(node.target)
    if node.extents is not None:
        doc["sparse"] = True
    if node.inconsistent:
        doc["inconsistent"] = True
    return doc


def long_line(path: bytes, node: Node) -> tuple[str, ...]:
    """Columns of ``ls --long``: mode, owner, size, mtime, path (-> target)."""
    from datetime import UTC, datetime

    when = datetime.fromtimestamp(node.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    owner = f"{node.user or node.uid}/{node.group or node.gid}"
    shown = shown_path(path)
    if node.target is not None:
        shown += " -> " + shown_path(node.target)
    return mode_string(node), owner, str(node.size), when, shown

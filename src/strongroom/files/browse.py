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
from strongroom.vault import RecoveryPoint, Vault


def list_point(
    vault: Vault, point: RecoveryPoint, path: str = "/", recursive: bool = False
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
    vault: Vault, points: Iterable[RecoveryPoint], pattern: str
) -> Iterator[tuple[RecoveryPoint, bytes, Node]]:
    """Every (point, path, node) whose path matches ``pattern`` (see ``patterns``)."""
    globs = PatternSet([pattern])
    trees = TreeReader(vault)
    memo: dict[tuple[bytes, bytes], list[tuple[bytes, Node]]] = {}

    def search(path: bytes, node: Node) -> list[tuple[bytes, Node]]:
        assert node.subtree is not None
        key = (node.subtree, path)
        hits = memo.get(key)
        if hits is None:
            hits = []
            for kid in trees.children(node):
                kpath = os.path.join(path, kid.name)
                if globs.matches(kpath, kid.kind == DIR):
                    hits.append((kpath, kid))
                if kid.kind == DIR and kid.subtree is not None:
                    hits.extend(search(kpath, kid))
            memo[key] = hits
        return hits

    for point in points:
        if point.manifest.kind != "files":
            continue
        for path, node in search(b"/", root_node(point)):
            yield point, path, node


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
    shown = os.fsdecode(path)
    if node.target is not None:
        shown += " -> " + os.fsdecode(node.target)
    return mode_string(node), owner, str(node.size), when, shown

"""Files a backup's worker process reads for its parent (files/walkprocs.py): what crosses the
pipe, each way, for every such file.

The parent sends a file's folder, name, cache row and its lstat; the worker reads the file
into its own packs as the parent would have (``FileReader.one`` on a node of its own) and
answers with the status, the bytes read, the errors, the node's fields a read sets and the
stat part of its cache row.  The parent puts those fields in its own node (the one its
folder's list holds) and rebuilds the cache row from its own folder, name and that node.

Why this shape: in a backup of one big folder the parent is the bottleneck (it lists the
folder and settles every file).  The lstat went as ``os.stat_result``'s own pickle (a tuple
and a dict of its nine named fields), the parent's whole node went to the worker and came
back (20 fields each way, copied into the parent's node one by one), and the cache row
repeated what the node holds.  A plain tuple of the stat's 19 fields, the name instead of
the node and 14 fields back took the parent's side of a file from 8.0 to 2.4 us (pickling
the request, unpickling the answer and taking it in; best of 5) and `flat`'s first backup
from 3.04 to 2.50 s (docs/benchmarks.md, "Session 32").
"""

from __future__ import annotations

import os
from operator import attrgetter
from typing import Any

from strongroom.files.cacherows import CacheEntry
from strongroom.files.nodes import FILE, Node
from strongroom.files.reading import FileItem, FileOutcome, FileReader, cache_row

# os.stat_result's fields beyond its ten positional ones (its own pickle names them in a dict)
_STAT_NAMED = attrgetter(
    "st_atime",
    "st_mtime",
    "st_ctime",
    "st_atime_ns",
    "st_mtime_ns",
    "st_ctime_ns",
    "st_blksize",
    "st_blocks",
    "st_rdev",
)
StatFields = tuple[Any, ...]

# What a read sets on a node (reading._fill_node, then the read's own): in this order in an
# answer, and taken in the same order by _take_filled.
FILLED = (
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "mtime_ns",
    "atime_ns",
    "size",
    "chunks",
    "extents",
    "link",
    "xattrs",
    "inconsistent",
    "flags",
)
_filled = attrgetter(*FILLED)

ReadRequest = tuple[bytes, bytes, CacheEntry | None, StatFields | None]
# status, bytes read, error, metadata error, the FILLED fields (None for an error) and the
# cache row's (inode, size, mtime, ctime), None when the file gets no row
ReadAnswer = tuple[str, int, str, str, tuple[Any, ...] | None, tuple[int, int, int, int] | None]


def stat_fields(st: os.stat_result) -> StatFields:
    """``st`` as a plain tuple that ``os.stat_result`` takes back whole."""
    return tuple(st) + _STAT_NAMED(st)


def read_request(item: FileItem) -> ReadRequest:
    st = item.st
    return item.directory, item.node.name, item.cached, None if st is None else stat_fields(st)


def read_for_parent(reader: FileReader, wanted: list[ReadRequest]) -> list[ReadAnswer]:
    """The worker's side: each file read as the parent would have, into the worker's packs."""
    answers: list[ReadAnswer] = []
    for directory, name, cached, fields in wanted:
        st = None if fields is None else os.stat_result(fields)
        out = reader.one(FileItem(None, directory, Node(name, FILE), cached, st))
        row = out.cache_row
        answers.append(
            (
                out.status,
                out.nread,
                out.error,
                out.meta_error,
                None if out.status == "error" else _filled(out.item.node),
                None if row is None else row[2:6],
            )
        )
    return answers


def outcome_of(item: FileItem, answer: ReadAnswer) -> FileOutcome:
    """The parent's side: the worker's answer as the outcome of the parent's own item."""
    status, nread, error, meta_error, filled, key = answer
    node = item.node
    if filled is not None:
        _take_filled(node, filled)
    row = None if key is None else cache_row(item.directory, node, *key)
    return FileOutcome(item, status, nread, error, row, meta_error)


def _take_filled(node: Node, filled: tuple[Any, ...]) -> None:
    # one unpacking assignment: a setattr loop over FILLED took three times as long
    (
        node.mode,
        node.uid,
        node.gid,
        node.user,
        node.group,
        node.mtime_ns,
        node.atime_ns,
        node.size,
        node.chunks,
        node.extents,
        node.link,
        node.xattrs,
        node.inconsistent,
        node.flags,
    ) = filled

"""Files a backup worker process reads for the parent (files/reading.py): the request and the
answer cross the worker's pipe as pickles, and the parent's own node ends up as a read here
would have left it."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

from blake3 import blake3

from strongroom.chunking import BytesLike, ContentChunker
from strongroom.files.cacherows import CacheEntry
from strongroom.files.content import ContentReader
from strongroom.files.metadata import Names, node_from_stat
from strongroom.files.nodes import FILE, Node
from strongroom.files.reading import FileItem, FileReader
from strongroom.files.remoteread import (
    FILLED,
    outcome_of,
    read_for_parent,
    read_request,
    stat_fields,
)


def _put(data: BytesLike) -> bytes:
    return blake3(data).digest()


def _reader() -> FileReader:
    return FileReader(ContentReader(ContentChunker(), _put), Names())


def _item(folder: Path, name: str) -> FileItem:
    st = os.lstat(folder / name)
    node = node_from_stat(name.encode(), st, Names())
    assert node is not None
    return FileItem(object(), os.fsencode(folder), node, None, st)


def test_a_worker_answer_fills_the_parents_node(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(b"tiny")
    (tmp_path / "big").write_bytes(os.urandom(3 << 20))
    # changed "just now" however slowly this runs: its mtime ahead of the read (racily clean)
    ahead = time.time_ns() + 60 * 10**9
    os.utime(tmp_path / "big", ns=(ahead, ahead))
    (tmp_path / "gone").write_bytes(b"removed before it is read")
    (tmp_path / "dir-now").write_bytes(b"replaced by a folder")
    items = [_item(tmp_path, name) for name in ("small", "big", "gone", "dir-now")]
    (tmp_path / "gone").unlink()
    (tmp_path / "dir-now").unlink()
    (tmp_path / "dir-now").mkdir()
    wire = pickle.loads(pickle.dumps([read_request(item) for item in items]))
    answers = pickle.loads(pickle.dumps(read_for_parent(_reader(), wire)))
    small, big, gone, now_dir = (outcome_of(i, a) for i, a in zip(items, answers, strict=True))
    here = _reader().one(_item(tmp_path, "big"))
    assert big.status == "new" and big.item.node == here.item.node
    assert big.item.node.chunks == here.item.node.chunks and len(big.item.node.chunks) > 1
    assert big.nread == 3 << 20 and big.cache_row is None  # just written: racily clean
    assert small.status == "new" and small.item.node.chunks == [_put(b"tiny")]
    assert gone.status == "error" and "No such file" in gone.error
    assert now_dir.status == "error" and now_dir.item.node.kind == FILE
    assert all(o.item is i for o, i in zip((small, big, gone, now_dir), items, strict=True))


def test_a_cached_row_decides_changed_or_unchanged(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"content")
    first = _reader().one(_item(tmp_path, "f"))
    item = _item(tmp_path, "f")
    node: Node = first.item.node
    st = item.st
    assert st is not None
    item.cached = CacheEntry(st.st_ino, st.st_size, 0, 0, list(node.chunks), None)
    (answer,) = read_for_parent(_reader(), pickle.loads(pickle.dumps([read_request(item)])))
    assert outcome_of(item, answer).status == "unchanged"
    item.cached = CacheEntry(st.st_ino, st.st_size, 0, 0, [b"\0" * 32], None)
    (answer,) = read_for_parent(_reader(), [read_request(item)])
    assert outcome_of(item, answer).status == "changed"


def test_the_stat_crosses_whole(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 5000)
    st = os.lstat(tmp_path / "f")
    back = os.stat_result(pickle.loads(pickle.dumps(stat_fields(st))))
    assert back == st
    names = ("st_atime", "st_mtime_ns", "st_ctime_ns", "st_atime_ns", "st_blocks", "st_blksize")
    assert all(getattr(back, n) == getattr(st, n) for n in (*names, "st_rdev", "st_dev"))


def test_every_field_a_read_sets_reaches_the_parents_node(tmp_path: Path) -> None:
    """A node read here and one read by a worker are equal, field by field, for a small file
    with an xattr and a second name, and a big file; both with cache rows."""
    (tmp_path / "small").write_bytes(b"small content")
    os.setxattr(tmp_path / "small", "user.note", b"kept")
    os.link(tmp_path / "small", tmp_path / "second")
    (tmp_path / "big").write_bytes(os.urandom(2 << 20))
    old = 1_000_000_000_000_000_000
    for name in ("small", "big"):
        os.utime(tmp_path / name, ns=(old, old))
    time.sleep(0.2)  # ctime older than the racy window: each file gets a cache row
    names = ["small", "big"]
    items = [_item(tmp_path, n) for n in names]
    for item in items:  # what the parent's node had before: none of it may survive
        item.node.chunks, item.node.xattrs, item.node.flags = [b"stale"], (("x", b"y"),), 99
        item.node.inconsistent, item.node.size = True, 1
    wire = pickle.loads(pickle.dumps([read_request(item) for item in items]))
    answers = pickle.loads(pickle.dumps(read_for_parent(_reader(), wire)))
    outs = [outcome_of(i, a) for i, a in zip(items, answers, strict=True)]
    for name, out in zip(names, outs, strict=True):
        here = _reader().one(_item(tmp_path, name))
        assert out.item.node == here.item.node, name
        assert out.cache_row == here.cache_row and out.status == here.status == "new"
        assert out.nread == here.nread
    small = outs[0].item.node
    assert small.xattrs == (("user.note", b"kept"),) and small.link is not None
    for out, name in zip(outs, names, strict=True):
        assert out.cache_row is not None and out.cache_row[:2] == (
            os.fsencode(tmp_path),
            name.encode(),
        )
    assert set(FILLED) <= set(Node.__slots__)

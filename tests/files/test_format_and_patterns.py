"""The tree encoding (lossless names, refs list every chunk) and the pattern semantics."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import DIR, FILE, KINDS, Node, decode_dir, encode_dir
from strongroom.files.patterns import PatternSet
from strongroom.vault import Vault

ids = st.binary(min_size=32, max_size=32)


@given(
    names=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=10, unique=True),
    chunks=st.lists(ids, max_size=5),
    sub=ids,
)
def test_encoding_round_trips_any_name(names: list[bytes], chunks: list[bytes], sub: bytes) -> None:
    nodes = [
        Node(name=n, kind=FILE, mode=0o644, size=9, chunks=chunks, xattrs=(("user.\udcff", n),))
        for n in names[1:]
    ]
    nodes.append(Node(name=names[0], kind=DIR, mode=0o755, subtree=sub, target=None))
    refs, body = encode_dir(nodes)
    assert set(refs) == (set(chunks) if len(names) > 1 else set()) | {sub}
    assert len(refs) == len(set(refs))
    assert decode_dir(refs, body) == sorted(nodes, key=lambda n: n.name)


def _reference_body(nodes: list[Node]) -> bytes:
    """The tree body as the module docstring of strongroom.files.nodes specifies it, written
    the plain way: the fast encoder must produce exactly these bytes (trees dedup by them)."""
    refs: list[bytes] = []

    def pos(cid: bytes) -> int:
        if cid not in refs:
            refs.append(cid)
        return refs.index(cid)

    items = []
    for n in sorted(nodes, key=lambda n: n.name):
        d: dict[str, object] = {"n": os.fsdecode(n.name), "t": n.kind, "m": n.mode}
        optional = {
            "u": n.uid, "g": n.gid, "un": n.user, "gn": n.group, "mt": n.mtime_ns,
            "at": n.atime_ns, "s": n.size, "r": n.rdev, "h": n.link, "fl": n.flags,
            "i": 1 if n.inconsistent else 0, "e": n.error,
        }  # fmt: skip
        d.update((k, v) for k, v in optional.items() if v)
        if n.chunks:
            d["c"] = [pos(c) for c in n.chunks]
        if n.extents is not None:
            d["x"] = [v for ext in n.extents for v in ext]
        if n.subtree is not None:
            d["st"] = pos(n.subtree)
        if n.target is not None:
            d["lt"] = os.fsdecode(n.target)
        if n.xattrs:
            d["xa"] = [[k, base64.b64encode(v).decode("ascii")] for k, v in n.xattrs]
        items.append(d)
    doc = {"v": 1, "nodes": items}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii")


small = st.integers(min_value=0, max_value=2**40)
text = st.text(max_size=8)
nodes_st = st.builds(
    Node,
    name=st.binary(min_size=1, max_size=12),
    kind=st.sampled_from(KINDS),
    mode=st.integers(0, 0o7777),
    uid=small, gid=small, user=text, group=text, mtime_ns=small, atime_ns=small, size=small,
    chunks=st.lists(ids, max_size=3),
    extents=st.none() | st.lists(st.tuples(small, small), max_size=3),
    subtree=st.none() | ids,
    target=st.none() | st.binary(max_size=12),
    rdev=small,
    link=st.none() | st.text(min_size=1, max_size=8),  # empty means absent

    xattrs=st.lists(st.tuples(text, st.binary(max_size=8)), max_size=2).map(tuple),
    inconsistent=st.booleans(),
    error=st.none() | st.text(min_size=1, max_size=8),
    flags=st.integers(0, 2**32 - 1),
)  # fmt: skip


@given(nodes=st.lists(nodes_st, max_size=6, unique_by=lambda n: n.name))
def test_encoding_is_the_specified_bytes(nodes: list[Node]) -> None:
    refs, body = encode_dir(nodes)
    assert body == _reference_body(nodes)
    assert decode_dir(refs, body) == sorted(nodes, key=lambda n: n.name)


def test_big_directory_and_long_chunk_lists() -> None:
    many = [
        Node(name=b"f%06d" % i, kind=FILE, size=1, chunks=[os.urandom(32)]) for i in range(100_000)
    ]
    huge = Node(
        name=b"huge", kind=FILE, size=1 << 40, chunks=[os.urandom(32) for _ in range(200_000)]
    )
    refs, body = encode_dir([*many, huge])
    assert len(refs) == 300_000
    back = decode_dir(refs, body)
    assert back[-1].chunks == huge.chunks and len(back) == 100_001


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "hit"),
    [
        ("*.tmp", b"/a/b/x.tmp", False, True),
        ("*.tmp", b"/a/b/x.tmpl", False, False),
        ("/home/*/.cache", b"/home/ann/.cache", True, True),
        ("/home/*/.cache", b"/srv/home/ann/.cache", True, False),
        ("build/out", b"/src/p/build/out", True, True),
        ("/a/**/z", b"/a/z", False, True),
        ("/a/**/z", b"/a/b/c/z", False, True),
        ("/a/**", b"/a/b/c", False, True),
        ("cache/", b"/x/cache", False, False),
        ("cache/", b"/x/cache", True, True),
        ("[!a]*.log", b"/l/b.log", False, True),
        ("[!a]*.log", b"/l/a.log", False, False),
        ("?.c", b"/s/x.c", False, True),
        ("*", b"/s/\xff", False, True),
        ("/s/\\*", b"/s/*", False, True),
    ],
)
def test_patterns(pattern: str, path: bytes, is_dir: bool, hit: bool) -> None:
    assert PatternSet([pattern]).matches(path, is_dir) is hit


def test_excludes_and_exclude_dirs(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "cache").mkdir()
    (src / "cache" / "x").write_text("x")
    (src / "keep" / "a.tmp").write_text("t")
    (src / "keep" / "b.txt").write_text("b")
    s = backup_files(vault, BackupOptions([str(src)], excludes=["*.tmp", "cache/"]))
    out = tmp_path / "out"
    restore_files(vault, vault.resolve_point(s.point_id), RestoreOptions(out))
    got = sorted(p.name for p in (out / os.path.relpath(src, "/")).rglob("*"))
    assert got == ["b.txt", "keep"]


def test_conflict_policies(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("from backup")
    (src / "d").mkdir()
    s = backup_files(vault, BackupOptions([str(src)]))
    point = vault.resolve_point(s.point_id)
    out = tmp_path / "out"
    dest = out / os.path.relpath(src, "/")
    dest.mkdir(parents=True)
    (dest / "f").write_text("local")
    (dest / "d").write_text("a file where the point has a folder")

    r = restore_files(vault, point, RestoreOptions(out, on_conflict="skip"))
    assert (dest / "f").read_text() == "local" and sorted(r.skipped) == [
        str(dest / "d"),
        str(dest / "f"),
    ]
    r = restore_files(vault, point, RestoreOptions(out, on_conflict="keep-both"))
    suffix = ".restored-" + point.point_id[:8]
    assert (dest / "f").read_text() == "local"
    assert (dest / ("f" + suffix)).read_text() == "from backup"
    assert (dest / ("d" + suffix)).is_dir()
    r = restore_files(vault, point, RestoreOptions(out, on_conflict="overwrite"))
    assert (dest / "f").read_text() == "from backup" and (dest / "d").is_dir()
    assert r.errors == []


def test_one_file_system(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    mnt = src / "mnt"
    mnt.mkdir(parents=True)
    (src / "here").write_text("h")
    if os.system(f"mount -t tmpfs -o size=1m tmpfs {mnt} 2>/dev/null"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mnt / "elsewhere").write_text("e")
        time.sleep(0.01)
        s = backup_files(vault, BackupOptions([str(src)], one_file_system=True))
        out = tmp_path / "out"
        restore_files(vault, vault.resolve_point(s.point_id), RestoreOptions(out))
        got = sorted(p.name for p in (out / os.path.relpath(src, "/")).rglob("*"))
        assert got == ["here", "mnt"]
    finally:
        os.system(f"umount {mnt}")

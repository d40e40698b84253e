"""The tree encoding (lossless names, refs list every chunk) and the pattern semantics."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import DIR, FILE, Node, decode_dir, encode_dir
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

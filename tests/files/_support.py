"""Helpers for the files tests: a tree with every file type and metadata kind, and a walker
that records every field of a tree without disturbing it (so atimes can be compared)."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

T_OLD = 1_500_000_000_123_456_789
T_DIR = 1_400_000_000_987_654_321


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        found.append((start, end - start))
        off = end
    return found


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def _content(path: bytes, st: os.stat_result) -> tuple[str, list[tuple[int, int]]]:
    fd = os.open(path, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
    try:
        h = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest(), _extents(fd, st.st_size)
    finally:
        os.close(fd)


def _record(path: bytes, st: os.stat_result, atime: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "mode": st.st_mode,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "mtime": st.st_mtime_ns,
        "xattrs": _xattrs(path),
    }
    if atime:
        rec["atime"] = st.st_atime_ns
    if stat.S_ISREG(st.st_mode):
        rec["size"] = st.st_size
        rec["sha256"], rec["extents"] = _content(path, st)
        rec["blocks"] = st.st_blocks
    elif stat.S_ISLNK(st.st_mode):
        rec["target"] = os.readlink(path)  # moves the link's atime: put it back
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        rec["rdev"] = st.st_rdev
    return rec


def snapshot(root: Path, atime: bool = True) -> dict[bytes, dict[str, Any]]:
    """Every entry below ``root`` (relative bytes path -> fields), hard links as groups.

    Directory atimes are put back after listing, files are read with O_NOATIME, so taking a
    snapshot changes nothing it records.
    """
    base = os.fsencode(root)
    out: dict[bytes, dict[str, Any]] = {}
    inodes: dict[tuple[int, int], list[bytes]] = {}
    stack = [base]
    while stack:
        d = stack.pop()
        dst = os.lstat(d)
        names = sorted(os.listdir(d))
        for name in names:
            p = os.path.join(d, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, base)
            if stat.S_ISSOCK(st.st_mode):
                continue
            out[rel] = _record(p, st, atime)
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
            elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        os.utime(d, ns=(dst.st_atime_ns, dst.st_mtime_ns))
    for group in inodes.values():
        for rel in group:
            out[rel]["links"] = sorted(group)
    return out


def subtree_of(vault: Any, point_id: str, path: Path) -> bytes:
    """The tree id a point recorded for the folder at ``path``."""
    from strongroom.files.tree import TreeReader, root_node

    node = TreeReader(vault).lookup(root_node(vault.resolve_point(point_id)), str(path))
    assert node is not None and node.subtree is not None
    return node.subtree


def assert_same(a: dict[bytes, dict[str, Any]], b: dict[bytes, dict[str, Any]]) -> None:
    assert sorted(a) == sorted(b), set(a) ^ set(b)
    for rel, rec in a.items():
        assert rec == b[rel], (rel, rec, b[rel])


@dataclass
class Everything:
    root: Path
    socket: Path


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def build_every_kind(root: Path) -> Everything:
    """A tree with every file type and metadata kind the engine handles (needs root)."""
    root.mkdir()
    d = root / "dir"
    d.mkdir()
    (root / "empty").write_bytes(b"")
    (root / "small.txt").write_text("hello world\n")
    (root / "medium.bin").write_bytes(os.urandom(300_000))
    (root / "big.bin").write_bytes(os.urandom(5_000_000) + b"\0" * 1_000_000)
    (root / "ünïcode name.txt").write_text("u")
    (root / "new\nline").write_text("n")
    (root / os.fsdecode(b"latin1-\xe9\xff")).write_text("not utf-8")
    setuid = root / "setuid"
    setuid.write_bytes(b"#!/bin/sh\n")
    setuid.chmod(0o4755)
    setgid = d / "setgid"
    setgid.write_bytes(b"g")
    setgid.chmod(0o2750)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    noperm = root / "noperm"
    noperm.write_bytes(b"secret")
    noperm.chmod(0o000)
    owned = d / "owned"
    owned.write_bytes(b"o")
    os.chown(owned, 1234, 5678)
    (root / "nobody").write_bytes(b"nb")
    os.chown(root / "nobody", 65534, 65534)
    # xattrs and ACLs
    x = root / "xattrs"
    x.write_bytes(b"x")
    os.setxattr(x, "user.text", b"value")
    os.setxattr(x, "user.binary", bytes(range(256)))
    os.setxattr(x, "trusted.secret", b"t")
    _sh("setfacl", "-m", "u:nobody:r,g:nogroup:rw", str(root / "xattrs"))
    acl = root / "acl-dir"
    acl.mkdir()
    _sh("setfacl", "-m", "u:nobody:rx", str(acl))
    _sh("setfacl", "-d", "-m", "u:nobody:rwx,g::r-x", str(acl))
    (acl / "inherits").write_bytes(b"i")
    cap = root / "capable"
    cap.write_bytes(b"c")
    cap.chmod(0o755)
    _sh("setcap", "cap_net_raw+ep", str(cap))
    os.chown(cap, 1000, 1000)
    _sh("setcap", "cap_net_raw+ep", str(cap))
    # links
    os.symlink("small.txt", root / "rel-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("does/not/exist", d / "dangling")
    os.lchown(d / "dangling", 4321, 8765)
    os.link(root / "small.txt", d / "hard1")
    os.link(root / "small.txt", root / "sticky" / "hard2")
    # special files
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "loop", 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    sock_path = root / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.fspath(sock_path))
    sock.close()
    # sparse files
    with open(root / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(os.urandom(10_000))
        f.seek(8 << 20)
        f.write(b"tail")
        f.truncate(12 << 20)
    with open(root / "all-hole", "wb") as f:
        f.truncate(5 << 20)
    # a read-only directory with content
    ro = root / "readonly"
    ro.mkdir()
    (ro / "inside").write_bytes(b"r")
    ro.chmod(0o555)
    # times, children before parents
    set_times(root)
    os.utime(root / "rel-link", ns=(T_OLD + 5, T_OLD + 7), follow_symlinks=False)
    return Everything(root, sock_path)


def set_times(root: Path) -> None:
    """Old, distinct atimes and mtimes for everything (post-order, symlinks untouched)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for i, name in enumerate(filenames):
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.utime(p, ns=(T_OLD + i * 1000 + 1, T_OLD + i * 1000))
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.utime(p, ns=(T_DIR + 11, T_DIR + len(name)))
    os.utime(root, ns=(T_DIR + 3, T_DIR + 2))


def digest_tree(root: Path) -> dict[bytes, tuple[Any, ...]]:
    """Every entry below ``root`` (relative path -> type, mode, owner, mtime, content hash or
    link target), walked through descriptors: paths may be longer than PATH_MAX and trees
    deeper than Python's recursion limit."""
    out: dict[bytes, tuple[Any, ...]] = {}
    stack = [(b"", os.open(root, os.O_RDONLY | os.O_DIRECTORY))]
    while stack:
        rel, fd = stack.pop()
        try:
            for name in sorted(os.fsencode(n) for n in os.listdir(fd)):
                st = os.lstat(name, dir_fd=fd)
                sub = os.path.join(rel, name)
                extra: Any = None
                if stat.S_ISDIR(st.st_mode):
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    stack.append((sub, child))
                elif stat.S_ISLNK(st.st_mode):
                    extra = os.readlink(name, dir_fd=fd)
                elif stat.S_ISREG(st.st_mode):
                    f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                    with os.fdopen(f, "rb") as fh:
                        extra = hashlib.sha256(fh.read()).hexdigest()
                out[sub] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_size, extra)
        finally:
            os.close(fd)
    return out


def make_chain(root: Path, names: list[str], leaf: bytes) -> None:
    """Folders ``root/names[0]/names[1]/...`` (however long or deep) and a file ``leaf`` in
    the last one, made through descriptors."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            step = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = step
        f = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, leaf)
        os.close(f)
        os.symlink("leaf", "link", dir_fd=fd)
    finally:
        os.close(fd)


_MODULES_HOOK = """\
import atexit, os, sys

def _report():
    with open(os.environ["STRONGROOM_TEST_MODULES_LOG"], "a") as log:
        log.write(f"{sys.argv[0]} {' '.join(sorted(sys.modules))}\\n")

atexit.register(_report)
"""


class ChildModules:
    """Which modules each child Python process had loaded when it exited: a
    ``sitecustomize`` on ``PYTHONPATH`` that every child (a backup's or restore's worker
    processes) imports at start-up writes them to a log."""

    def __init__(self, tmp_path: Path, monkeypatch: Any) -> None:
        hook = tmp_path / "modules-hook"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(_MODULES_HOOK)
        self.log = tmp_path / "modules.log"
        self.log.touch()
        paths = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
        monkeypatch.setenv("STRONGROOM_TEST_MODULES_LOG", str(self.log))

    def processes(self) -> list[set[str]]:
        """The loaded modules of each child that exited, in exit order."""
        lines = self.log.read_text().splitlines()
        return [set(line.split()[1:]) for line in lines]


def workers_up_before_the_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test tree is walked in about the time workers take to start (0.4 s): waiting for them
    puts every folder after the first through them."""
    from strongroom.files.walker import TreeWalker

    start = TreeWalker._maybe_start_workers

    def start_and_wait(self: TreeWalker) -> None:
        start(self)
        if self.procs is not None:
            self.procs.wait_ready(60)

    monkeypatch.setattr(TreeWalker, "_maybe_start_workers", start_and_wait)

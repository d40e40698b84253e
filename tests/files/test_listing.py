"""``_listing.list_folder`` (files/_listing.c) gives what ``os.scandir`` and ``os.lstat`` give:
the same names in the same order, each with an ``os.stat_result`` equal field for field
(times far outside 64-bit nanoseconds too), symlinks left to the caller when asked, the
skipped prefix left out; and a backup walks the same tree with it as without it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.files import BackupOptions, _listing, backup_files, longpath
from strongroom.files.nodes import TEMP_PREFIX
from strongroom.vault import Vault
from tests.files._support import build_every_kind

FIELDS = [
    "st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size",
    "st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns",
    "st_blksize", "st_blocks", "st_rdev",
]  # fmt: skip

names = st.binary(min_size=1, max_size=60).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..")
)
kinds = st.sampled_from(["file", "dir", "symlink", "fifo"])


def _make(folder: Path, name: bytes, kind: str, size: int) -> None:
    path = os.path.join(bytes(folder), name)
    if kind == "file":
        with open(path, "wb") as f:
            f.write(b"x" * size)
    elif kind == "dir":
        os.mkdir(path)
    elif kind == "symlink":
        os.symlink(b"target-" + name[:10], path)
    else:
        os.mkfifo(path)


def _listed(
    folder: Path, skip: bytes, apart: bool
) -> list[tuple[bytes, os.stat_result | int | None]]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _listing.list_folder(fd, skip, apart)
    finally:
        os.close(fd)


def _same(a: os.stat_result, b: os.stat_result) -> None:
    assert type(a) is type(b) is os.stat_result
    assert a == b
    for field in FIELDS:
        assert getattr(a, field) == getattr(b, field), field


@given(
    st.dictionaries(names, st.tuples(kinds, st.integers(0, 3000)), max_size=25),
    st.booleans(),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_the_same_entries_and_lstat_as_os(
    tmp_path: Path, entries: dict[bytes, tuple[str, int]], apart: bool
) -> None:
    folder = tmp_path / os.urandom(6).hex()
    folder.mkdir()
    for name, (kind, size) in entries.items():
        _make(folder, name, kind, size)
    got = _listed(folder, TEMP_PREFIX, apart)
    want = sorted(n for n in os.listdir(bytes(folder)) if not n.startswith(TEMP_PREFIX))
    assert [n for n, _ in got] == want
    for name, st_ in got:
        real = os.lstat(os.path.join(bytes(folder), name))
        if apart and stat.S_ISLNK(real.st_mode):
            assert st_ is None
        else:
            assert isinstance(st_, os.stat_result)
            _same(st_, real)


def test_names_of_the_skipped_prefix_are_left_out(tmp_path: Path) -> None:
    for name in (TEMP_PREFIX + b"tmp-1", b"a", TEMP_PREFIX[:-1], b"z" + TEMP_PREFIX):
        (tmp_path / os.fsdecode(name)).write_bytes(b"")
    got = [n for n, _ in _listed(tmp_path, TEMP_PREFIX, False)]
    assert got == sorted([b"a", TEMP_PREFIX[:-1], b"z" + TEMP_PREFIX])
    assert len(_listed(tmp_path, b"", False)) == 4


def test_a_folder_bigger_than_one_read_of_entries(tmp_path: Path) -> None:
    """4,000 names of 60 bytes: 320 KB of directory entries, ten reads of 32 KiB."""
    want = sorted(b"%04d-" % i + b"n" * 55 for i in range(4000))
    for name in reversed(want):
        os.close(os.open(os.path.join(bytes(tmp_path), name), os.O_CREAT | os.O_WRONLY))
    got = _listed(tmp_path, TEMP_PREFIX, False)
    assert [n for n, _ in got] == want
    _same(got[1234][1], os.lstat(os.path.join(bytes(tmp_path), want[1234])))  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-(2**31) - 5, -1, 0, 1, 2**31 + 7, 13_600_000_000])
def test_times_beyond_what_nanoseconds_fit_in_64_bits(tmp_path: Path, seconds: int) -> None:
    """ext4 keeps times to the year 2446; past 2262 their nanoseconds exceed 64 bits."""
    path = tmp_path / "old-or-new"
    path.write_bytes(b"")
    os.utime(path, ns=(seconds * 10**9 + 123, seconds * 10**9 + 999_999_999))
    [(name, got)] = _listed(tmp_path, b"", False)
    assert name == b"old-or-new"
    assert isinstance(got, os.stat_result)
    _same(got, os.lstat(path))


def test_a_descriptor_that_is_no_folder_raises(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(NotADirectoryError):
            _listing.list_folder(fd, b"", False)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        _listing.list_folder(12345, b"", False)


def test_the_folder_lists_through_the_module_or_scandir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("f", tmp_path / "l")
    with longpath.Folder(bytes(tmp_path)) as folder:
        got = folder.lstat_all(TEMP_PREFIX, True)
    assert got is not None and [n for n, _ in got] == [b"f", b"l"] and got[1][1] is None
    monkeypatch.setattr(longpath, "_listing", None)
    with longpath.Folder(bytes(tmp_path)) as folder:
        assert folder.lstat_all(TEMP_PREFIX, True) is None


def test_a_backup_makes_the_same_point_either_way(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every kind of entry (build_every_kind: symlinks, a FIFO, hard links, xattrs, odd
    names), a temporary file of a restore left behind, and an entry that fails to lstat
    (reported the same way: its folder is listed, its error recorded)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    build_every_kind(tree / "kinds")
    (tree / "kinds" / os.fsdecode(TEMP_PREFIX + b"left-behind")).write_bytes(b"x")

    def opts(source: str) -> BackupOptions:
        return BackupOptions([str(tree)], source=source, use_cache=False, processes=0)

    backup_files(vault, opts("warm"))
    compiled = backup_files(vault, opts("c"))
    monkeypatch.setattr(longpath, "_listing", None)
    plain = backup_files(vault, opts("py"))
    points = {p.point_id: p for p in vault.points()}
    assert points[compiled.point_id].manifest.roots == points[plain.point_id].manifest.roots
    assert compiled.counts() | {"duration": 0} == plain.counts() | {"duration": 0}


def test_an_entry_whose_lstat_fails_is_reported_and_the_rest_kept(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry gone between the listing and its lstat: the compiled call gives its errno."""
    for name in ("a", "b", "c"):
        (tmp_path / "src" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "src" / name).write_bytes(name.encode())
    real = _listing.list_folder

    def gone_b(
        fd: int, skip: bytes, apart: bool
    ) -> list[tuple[bytes, os.stat_result | int | None]]:
        return [(n, 2 if n == b"b" else s) for n, s in real(fd, skip, apart)]

    monkeypatch.setattr(longpath, "_listing", SimpleNamespace(list_folder=gone_b))
    summary = backup_files(
        vault, BackupOptions([str(tmp_path / "src")], processes=0, use_cache=False)
    )
    assert summary.errors == [(str(tmp_path / "src" / "b"), "No such file or directory")]
    assert summary.files == 2

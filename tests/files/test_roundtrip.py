"""Round trips: every file type and metadata kind, Hypothesis trees, a second machine."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.vault import Vault
from tests.files._support import assert_same, build_every_kind, set_times, snapshot


def _restored(target: Path, src: Path) -> Path:
    return target / os.path.relpath(src.resolve(), "/")


def test_every_kind_round_trip(tmp_path: Path, vault: Vault, reopen: Callable[[], Vault]) -> None:
    tree = build_every_kind(tmp_path / "src")
    before = snapshot(tree.root)
    summary = backup_files(vault, BackupOptions([str(tree.root)], source="t"))
    assert summary.errors == []
    assert summary.skipped == [(str(tree.socket), "socket (not backed up)")]
    assert summary.inconsistent == []
    # The backup changed nothing, folders' atimes included (listed with O_NOATIME), but
    # reading a symlink moves its atime (relatime): the point records the atime it left.
    after = snapshot(tree.root)
    links = {k for k, rec in before.items() if "target" in rec}
    assert links and all(after[k]["atime"] > before[k]["atime"] for k in links)
    assert_same(
        {
            k: {f: v for f, v in rec.items() if f != "atime" or k not in links}
            for k, rec in after.items()
        },
        {
            k: {f: v for f, v in rec.items() if f != "atime" or k not in links}
            for k, rec in before.items()
        },
    )

    other = reopen()  # a second machine: only the vault location and the passphrase
    point = other.resolve_point("latest", source="t")
    target = tmp_path / "restore"
    result = restore_files(other, point, RestoreOptions(target, verify=True))
    assert result.errors == []
    assert result.verified > 0
    out = _restored(target, tree.root)
    assert_same(after, snapshot(out))
    sparse = os.stat(out / "sparse")
    assert sparse.st_blocks * 512 < sparse.st_size // 4
    assert os.stat(out / "all-hole").st_blocks == 0
    assert not any(n.startswith(".strongroom-tmp-") for _, _, fs in os.walk(target) for n in fs)


def test_subset_and_paths_map_under_target(tmp_path: Path, vault: Vault) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f.txt").write_text("f")
    (src / "a" / "g.log").write_text("g")
    (src / "c.txt").write_text("c")
    backup_files(vault, BackupOptions([str(src)], source="t"))
    point = vault.resolve_point("latest")
    target = tmp_path / "out"
    restore_files(vault, point, RestoreOptions(target, [str(src / "a" / "b" / "f.txt")]))
    base = _restored(target, src)
    assert sorted(p.name for p in base.rglob("*")) == ["a", "b", "f.txt"]
    assert (base / "a").stat().st_mtime_ns == (src / "a").stat().st_mtime_ns
    target2 = tmp_path / "out2"
    restore_files(vault, point, RestoreOptions(target2, ["*.txt"]))
    base2 = _restored(target2, src)
    assert sorted(p.name for p in base2.rglob("*") if p.is_file()) == ["c.txt", "f.txt"]


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\0"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith(".strongroom-tmp-"))
raw_names = st.binary(min_size=1, max_size=8).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..")
)


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> dict[bytes, Any]:
    entries: dict[bytes, Any] = {}
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.one_of(names.map(os.fsencode), raw_names))
        kind = draw(st.sampled_from(["file", "file", "dir", "link"] if depth < 3 else ["file"]))
        if kind == "dir":
            entries[name] = draw(trees(depth + 1))
        elif kind == "link":
            entries[name] = ("link", draw(raw_names))
        else:
            data = draw(st.binary(max_size=3000))
            mode = draw(st.sampled_from([0o644, 0o600, 0o755, 0o4711, 0o444]))
            xattr = draw(st.one_of(st.none(), st.binary(max_size=40)))
            entries[name] = ("file", data, mode, xattr)
    return entries


def _make(root: bytes, spec: dict[bytes, Any]) -> None:
    os.mkdir(root)
    for name, item in spec.items():
        path = os.path.join(root, name)
        if isinstance(item, dict):
            _make(path, item)
        elif item[0] == "link":
            os.symlink(item[1], path)
        else:
            _, data, mode, xattr = item
            with open(path, "wb") as f:
                f.write(data)
            if xattr is not None:
                os.setxattr(path, "user.h", xattr)
            os.chmod(path, mode)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=trees())
def test_generated_trees_round_trip(vault: Vault, spec: dict[bytes, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        _make(os.fsencode(src), spec)
        set_times(src)
        summary = backup_files(vault, BackupOptions([str(src)], source="h", use_cache=False))
        assert summary.errors == []
        before = snapshot(src)  # as the backup left it: reading a symlink moves its atime
        point = vault.resolve_point(summary.point_id)
        target = Path(tmp) / "out"
        restore_files(vault, point, RestoreOptions(target, verify=True))
        assert_same(before, snapshot(_restored(target, src)))
        shutil.rmtree(target)

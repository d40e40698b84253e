"""A restore killed (SIGKILL) before its renames leaves temporary files; the next restore into
the same target removes them, and only them, and ends with exactly the point's tree."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.errors import FilesError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import TEMP_PREFIX
from strongroom.vault import Vault
from tests.conftest import PASSPHRASE
from tests.files._support import assert_same, set_times, snapshot

ROOT = Path(__file__).resolve().parents[2]
_RESTORE = """
import sys
from strongroom.files import RestoreOptions, restore_files
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
vault = Vault.open(LocalBackend(sys.argv[1]), sys.argv[2])
restore_files(vault, vault.resolve_point(sys.argv[3]), RestoreOptions(sys.argv[4]))
"""


def _tree(src: Path) -> None:
    for i in range(60):
        folder = src / f"d{i % 3}" / "inner"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03}").write_bytes(os.urandom(500 + 37 * i))
    os.symlink("d0", src / "link")
    os.mkfifo(src / "fifo")
    set_times(src)


def _temps(root: Path) -> list[Path]:
    prefix = os.fsdecode(TEMP_PREFIX)
    return [Path(d, n) for d, _, names in os.walk(root) for n in names if n.startswith(prefix)]


def _killed_restore(vault_dir: Path, point: str, target: Path, failpoint: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "STRONGROOM_FAILPOINT": failpoint,
    }
    args = [sys.executable, "-c", _RESTORE, str(vault_dir), PASSPHRASE, point, str(target)]
    proc = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr.decode()


@pytest.mark.parametrize("existing", [False, True])
def test_the_next_restore_removes_what_a_killed_one_left(
    tmp_path: Path, vault: Vault, vault_dir: Path, existing: bool
) -> None:
    """Files the restore creates have no name until they are linked into place, so a kill
    leaves none of them; files it overwrites wait under temporary names."""
    src = tmp_path / "src"
    _tree(src)
    point = backup_files(vault, BackupOptions([str(src)], source="s")).point_id
    before = snapshot(src)  # as the backup left it: reading a symlink moves its atime
    target = tmp_path / "out"
    mine = target / ".strongroom-tmp-notes"  # a user's file that merely shares the prefix
    target.mkdir()
    mine.write_bytes(b"keep me")
    os.mkdir(target / ".strongroom-tmp-0badcafe-1")  # named like one, but a directory
    if existing:
        for f in src.rglob("f*"):
            old = target / f.relative_to("/")
            old.parent.mkdir(parents=True, exist_ok=True)
            old.write_bytes(b"old")

    _killed_restore(vault_dir, point, target, "restore-rename@11")  # 10 files in place
    # the temporaries wait in the restore's staging folder at the target's root
    (staging,) = [p for p in target.iterdir() if p.name.startswith(".strongroom-tmp-staging-")]
    assert len(list(staging.iterdir())) == (50 if existing else 0)
    assert [p for p in _temps(target) if p.parent != target] == []

    summary = restore_files(vault, vault.resolve_point(point), RestoreOptions(target))
    assert summary.errors == [] and summary.files == 60
    after = snapshot(target / os.path.relpath(src, "/"))  # first: listing moves atimes
    assert sorted(p.name for p in _temps(target)) == [".strongroom-tmp-notes"]
    assert not staging.exists()
    assert mine.read_bytes() == b"keep me"
    assert (target / ".strongroom-tmp-0badcafe-1").is_dir()
    assert_same(before, after)


def test_a_second_restore_into_a_target_being_restored_is_refused(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "src"
    _tree(src)
    point = backup_files(vault, BackupOptions([str(src)], source="s")).point_id
    target = tmp_path / "out"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running restore holds it
        with pytest.raises(FilesError, match="another restore is writing into"):
            restore_files(vault, vault.resolve_point(point), RestoreOptions(target))
    finally:
        os.close(fd)
    assert restore_files(vault, vault.resolve_point(point), RestoreOptions(target)).files == 60


def test_a_running_restores_staging_folder_below_the_target_is_left_alone(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "src"
    _tree(src)
    point = backup_files(vault, BackupOptions([str(src)], source="s")).point_id
    target = tmp_path / "out"
    inner = target / os.path.relpath(src, "/") / "d0"  # a folder this restore writes into
    inner.mkdir(parents=True)
    live, dead = (
        inner / ".strongroom-tmp-staging-0000beef",
        inner / ".strongroom-tmp-staging-dead0001",
    )
    for staging in (live, dead):
        staging.mkdir()
        (staging / "1").write_bytes(b"half")
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the restore into ``inner`` holds it
        summary = restore_files(vault, vault.resolve_point(point), RestoreOptions(target))
    finally:
        os.close(fd)
    assert summary.errors == [] and summary.files == 60
    assert (live / "1").read_bytes() == b"half"
    assert not dead.exists()

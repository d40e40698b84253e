"""A restore of a whole point into an empty target (by subtrees with worker processes, or by
threads) builds the point in its staging folder and moves it into the target at the end
(files/staged.py): a kill leaves nothing of the point under a final name, a name taken
meanwhile is kept beside, and the move never replaces anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.files import RestoreOptions, restore_files, staged
from strongroom.vault import Vault
from tests.conftest import PASSPHRASE
from tests.files._support import assert_same, snapshot
from tests.files.test_restore_processes import _backup, _tree, workers_up_first  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
_RESTORE = """
import sys
from strongroom.files import RestoreOptions, restore_files
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
vault = Vault.open(LocalBackend(sys.argv[1]), sys.argv[2])
opts = RestoreOptions(sys.argv[4], processes=int(sys.argv[5]))
restore_files(vault, vault.resolve_point(sys.argv[3]), opts)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("src") / "tree", folders=6, files=20)


@pytest.mark.parametrize("processes", [0, 1])
def test_a_kill_before_the_move_leaves_the_staging_folder_alone(
    tmp_path: Path, vault: Vault, vault_dir: Path, source: Path, processes: int
) -> None:
    """Killed with every file written and durable but not yet moved: the target holds the
    staging folder and nothing else; the next restore removes it and restores the point."""
    point = _backup(vault, source)
    target = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "STRONGROOM_FAILPOINT": "restore-tree-move",
    }
    args = [sys.executable, "-c", _RESTORE, str(vault_dir), PASSPHRASE, point, str(target)]
    args.append(str(processes))
    proc = subprocess.run(args, env=env, capture_output=True, timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr.decode()
    (staging,) = target.iterdir()
    assert staging.name.startswith(".strongroom-tmp-staging-")
    files = [f for f in (staging / "tree").rglob("*") if f.is_file() and not f.is_symlink()]
    assert len(files) > 100  # the point was written, under the staging folder only

    opts = RestoreOptions(target, processes=processes)
    summary = restore_files(vault, vault.resolve_point(point), opts)
    assert summary.errors == [] and summary.processes == processes
    assert [p.name for p in target.iterdir()] == [source.parts[1]]
    rel = source.relative_to("/")
    assert_same(snapshot(source, atime=False), snapshot(target / rel, atime=False))


@pytest.mark.parametrize("processes", [0, 1])
def test_a_name_taken_during_the_restore_is_kept_beside(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """Something that takes a top-level name while the tree is built (here an empty folder,
    which a plain rename would silently replace) stays; the point's entry is kept beside it
    as NAME.restored-<point>, with its folders' metadata."""
    point = _backup(vault, source)
    target = tmp_path / "out"
    top = source.parts[1]
    move_out = staged.move_out

    def intruded(tree: bytes, into: bytes, suffix: bytes) -> staged.Relocation:
        os.mkdir(os.path.join(into, os.fsencode(top)))
        return move_out(tree, into, suffix)

    monkeypatch.setattr(staged, "move_out", intruded)
    opts = RestoreOptions(target, processes=processes)
    summary = restore_files(vault, vault.resolve_point(point), opts)
    kept = f"{top}.restored-{point[:8]}"
    assert summary.errors == [] and summary.kept_both == [str(target / kept)]
    assert list((target / top).iterdir()) == []
    rel = source.relative_to("/" + top)
    assert_same(snapshot(source, atime=False), snapshot(target / kept / rel, atime=False))


def test_the_move_never_replaces_anything(tmp_path: Path) -> None:
    src, empty, full = tmp_path / "src", tmp_path / "empty", tmp_path / "file"
    src.mkdir()
    (src / "x").write_bytes(b"x")
    empty.mkdir()
    full.write_bytes(b"mine")
    for taken in (empty, full):
        with pytest.raises(FileExistsError):
            staged.move_no_replace(os.fsencode(src), os.fsencode(taken))
    assert full.read_bytes() == b"mine" and list(empty.iterdir()) == []
    staged.move_no_replace(os.fsencode(src), os.fsencode(tmp_path / "new"))
    assert (tmp_path / "new" / "x").read_bytes() == b"x" and not src.exists()


def test_paths_follow_their_top_level_entry() -> None:
    moved = staged.Relocation(b"/t/.s/tree", {b"a": b"/t/a", b"b": b"/t/b.restored-1"})
    assert moved.final(b"/t/.s/tree/a") == b"/t/a"
    assert moved.final(b"/t/.s/tree/a/x/y") == b"/t/a/x/y"
    assert moved.final(b"/t/.s/tree/b/x") == b"/t/b.restored-1/x"
    assert moved.final(b"/t/.s/tree/c/x") is None  # not moved: gone with the staging folder
    assert moved.final(b"/t/.s/treeish/a") == b"/t/.s/treeish/a"
    assert moved.final(b"/elsewhere") == b"/elsewhere"
    assert moved.shown("/t/.s/tree/a/é") == "/t/a/é"


def test_a_staged_tree_is_not_made_without_a_staging_folder(tmp_path: Path) -> None:
    assert staged.make_tree(os.fsencode(tmp_path / "missing")) == b""
    tree = staged.make_tree(os.fsencode(tmp_path))
    assert (
        tree == os.fsencode(tmp_path / "tree")
        and (tmp_path / "tree").stat().st_mode & 0o777 == 0o700
    )

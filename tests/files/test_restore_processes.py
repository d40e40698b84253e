"""Files restores with worker processes (files/restoreprocs.py, restorework.py): the same tree
as with threads, on every kind of entry and every conflict policy; started on their own for a
big point of small files only; a worker's death failing the restore with nothing left under a
temporary name."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from strongroom.errors import StrongroomError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import TEMP_PREFIX
from strongroom.files.restore import RestoreSummary
from strongroom.vault import Vault
from tests.files._support import assert_same, build_every_kind, snapshot

_TWO_CORES = len(os.sched_getaffinity(0)) >= 2


def _tree(root: Path, folders: int, files: int) -> Path:
    """Every kind of entry, and folders of small files (hard links across folders too)."""
    root.mkdir(parents=True)
    build_every_kind(root / "kinds")
    rng = random.Random(7)
    for d in range(folders):
        folder = root / "many" / f"d{d:03}"
        folder.mkdir(parents=True)
        for i in range(files):
            (folder / f"f{i:03}").write_bytes(rng.randbytes(rng.choice((0, 10, 700, 9000))))
    os.link(root / "many" / "d000" / "f001", root / "many" / f"d{folders - 1:03}" / "linked")
    os.utime(root / "many" / f"d{folders - 1:03}", ns=(10**18, 10**18))
    return root


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tree(tmp_path_factory.mktemp("src") / "tree", folders=30, files=40)


def _backup(vault: Vault, source: Path) -> str:
    opts = BackupOptions([str(source)], source="procs", processes=0, use_cache=False)
    return backup_files(vault, opts).point_id


def _restore(
    vault: Vault, point: str, out: Path, processes: int | None, **more: object
) -> RestoreSummary:
    opts = RestoreOptions(out, processes=processes, **more)  # type: ignore[arg-type]
    return restore_files(vault, vault.resolve_point(point), opts)


def _temporaries(root: Path) -> list[str]:
    found = []
    for _dirpath, dirnames, filenames in os.walk(root):
        found += [n for n in dirnames + filenames if os.fsencode(n).startswith(TEMP_PREFIX)]
    return found


def test_workers_restore_what_threads_restore(tmp_path: Path, vault: Vault, source: Path) -> None:
    point = _backup(vault, source)
    by_threads = _restore(vault, point, tmp_path / "threads", 0)
    by_workers = _restore(vault, point, tmp_path / "workers", 2)
    assert by_threads.processes == 0 and by_workers.processes == 2
    assert by_workers.errors == by_threads.errors == []
    for key in ("files", "dirs", "links", "others", "bytes_written"):
        assert getattr(by_workers, key) == getattr(by_threads, key), key
    rel = source.relative_to("/")
    want = snapshot(source, atime=False)
    assert_same(want, snapshot(tmp_path / "threads" / rel, atime=False))
    assert_same(want, snapshot(tmp_path / "workers" / rel, atime=False))
    linked = tmp_path / "workers" / rel / "many"
    assert os.path.samefile(linked / "d000" / "f001", linked / "d029" / "linked")
    assert not _temporaries(tmp_path / "workers")


def test_workers_follow_every_conflict_policy(tmp_path: Path, vault: Vault, source: Path) -> None:
    point = _backup(vault, source)
    results: dict[str, list[RestoreSummary]] = {}
    for processes in (0, 2):
        out = tmp_path / f"p{processes}"
        first = _restore(vault, point, out, processes)
        victim = out / source.relative_to("/") / "many" / "d003" / "f004"
        victim.write_bytes(b"changed since")
        again = [
            _restore(vault, point, out, processes, on_conflict=policy)
            for policy in ("skip", "keep-both", "overwrite")
        ]
        assert victim.read_bytes() != b"changed since"  # overwritten by the last
        assert not _temporaries(out)
        results[str(processes)] = [first, *again]
    for threads, workers in zip(results["0"], results["2"], strict=True):
        assert workers.files == threads.files
        assert len(workers.skipped) == len(threads.skipped)
        assert len(workers.kept_both) == len(threads.kept_both)
        assert workers.errors == threads.errors == []
    skip, keep_both = results["2"][1], results["2"][2]
    assert skip.files == 0 and len(skip.skipped) > 1000
    assert len(keep_both.kept_both) == keep_both.files > 1000
    assert_same(snapshot(tmp_path / "p0", atime=False), snapshot(tmp_path / "p2", atime=False))


def test_workers_start_by_themselves_only_for_a_big_point_of_small_files(
    tmp_path: Path, vault: Vault
) -> None:
    src = tmp_path / "big"
    for d in range(40):
        (src / f"d{d:02}").mkdir(parents=True)
        for i in range(80):
            (src / f"d{d:02}" / f"{i}").write_bytes(b"%d" % i)
    point = _backup(vault, src)
    whole = _restore(vault, point, tmp_path / "all", None)
    assert whole.files == 3200
    assert whole.processes == (2 if _TWO_CORES else 0)
    one_folder = _restore(vault, point, tmp_path / "one", None, selectors=[f"{src}/d07"])
    assert one_folder.files == 80 and one_folder.processes == 0
    assert_same(
        snapshot(src, atime=False), snapshot(tmp_path / "all" / src.relative_to("/"), atime=False)
    )


def test_a_worker_killed_fails_the_restore_and_leaves_no_temporaries(
    tmp_path: Path, vault: Vault, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = _backup(vault, source)
    out = tmp_path / "out"
    monkeypatch.setenv("STRONGROOM_FAILPOINT", "restorework-batch")  # SIGKILL at its first
    with pytest.raises(StrongroomError, match="restore worker process stopped"):
        _restore(vault, point, out, 2)
    monkeypatch.delenv("STRONGROOM_FAILPOINT")
    assert not _temporaries(out)
    ok = _restore(vault, point, out, 2)
    assert ok.errors == []
    assert_same(snapshot(source, atime=False), snapshot(out / source.relative_to("/"), atime=False))

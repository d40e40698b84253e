"""Files created without a name (O_TMPFILE) and linked into place once durable
(files/fetch.py ``_create_unnamed``, placing.link_into_place): by the threads of a restore
too, with the rename's meaning kept when something took the destination since the plan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.placing import link_into_place, rename_into_place
from strongroom.vault import Vault


def _unnamed(folder: Path, data: bytes) -> int:
    fd = os.open(folder, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o644)
    os.write(fd, data)
    return fd


def test_a_file_without_a_name_is_linked_and_closed(tmp_path: Path) -> None:
    fd = _unnamed(tmp_path, b"whole")
    assert link_into_place(fd, os.fsencode(tmp_path / "tmp"), os.fsencode(tmp_path / "f")) is None
    assert (tmp_path / "f").read_bytes() == b"whole"
    assert sorted(os.listdir(tmp_path)) == ["f"]
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_an_entry_that_took_the_destination_is_replaced_as_a_rename_would(
    tmp_path: Path,
) -> None:
    (tmp_path / "f").write_bytes(b"came since the plan")
    fd = _unnamed(tmp_path, b"restored")
    assert link_into_place(fd, os.fsencode(tmp_path / "tmp"), os.fsencode(tmp_path / "f")) is None
    assert (tmp_path / "f").read_bytes() == b"restored"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_failed_link_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    fd = _unnamed(tmp_path, b"x")
    got = link_into_place(fd, os.fsencode(tmp_path / "tmp"), os.fsencode(tmp_path / "no" / "f"))
    assert got == "cannot link into place: No such file or directory"
    assert os.listdir(tmp_path) == []


def test_a_restore_by_threads_links_the_files_it_creates(
    tmp_path: Path, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files the plan creates are linked; a file the restore overwrites is renamed over."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02}").write_bytes(os.urandom(i * 100))
    point = backup_files(vault, BackupOptions([str(src)], processes=0, use_cache=False)).point_id
    out = tmp_path / "out"
    kept = out / src.relative_to("/") / "f07"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"old")
    linked: list[str] = []
    renamed: list[str] = []

    def spy_link(fd: int, tmp: bytes, dest: bytes) -> str | None:
        linked.append(os.path.basename(os.fsdecode(dest)))
        return link_into_place(fd, tmp, dest)

    def spy_rename(tmp: bytes, dest: bytes) -> str | None:
        renamed.append(os.path.basename(os.fsdecode(dest)))
        return rename_into_place(tmp, dest)

    monkeypatch.setattr("strongroom.files.contents.link_into_place", spy_link)
    monkeypatch.setattr("strongroom.files.contents.rename_into_place", spy_rename)
    summary = restore_files(vault, vault.resolve_point(point), RestoreOptions(out, processes=0))
    assert summary.errors == [] and summary.files == 30
    assert renamed == ["f07"] and sorted(linked) == [f"f{i:02}" for i in range(30) if i != 7]
    for i in range(30):
        assert (out / src.relative_to("/") / f"f{i:02}").read_bytes() == (
            src / f"f{i:02}"
        ).read_bytes()

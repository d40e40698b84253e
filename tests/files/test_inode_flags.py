"""Inode flags (chattr): captured, restored last, no-dump honoured; on real ext4 file systems
(tmpfs has no such flags)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.files import BackupOptions, RestoreOptions, backup_files, diff_live, restore_files
from strongroom.files.metadata import FL_APPEND, FL_IMMUTABLE, FL_NOATIME, FL_NODUMP
from strongroom.files.tree import TreeReader, root_node
from strongroom.vault import Vault

# path below the source -> chattr flags set on it
FLAGGED = {
    "imm.txt": "+i",
    "app.log": "+a",
    "nodump.bin": "+d",
    "noatime.txt": "+A",
    "folder": "+i",
    "folder/inner.log": "+a",
    "skipdir": "+d",
}
PLAIN = ["plain.txt", "skipdir/x.txt"]


def _lsattr(path: Path) -> str:
    out = subprocess.run(["lsattr", "-d", str(path)], check=True, capture_output=True, text=True)
    return out.stdout.split()[0]


def _source(root: Path) -> Path:
    src = root / "src"
    (src / "folder").mkdir(parents=True)
    (src / "skipdir").mkdir()
    for rel in [*FLAGGED, *PLAIN]:
        if rel not in ("folder", "skipdir"):
            (src / rel).write_bytes(rel.encode() * 100)
    for rel in ["folder/inner.log", *(r for r in FLAGGED if r != "folder/inner.log")]:
        subprocess.run(["chattr", FLAGGED[rel], str(src / rel)], check=True)
    return src


def test_flags_are_backed_up_and_restored_last(ext4: Callable[[str], Path], vault: Vault) -> None:
    src = _source(ext4("a"))
    time.sleep(0.2)  # out of the racy window: the files cache takes the files
    assert backup_files(vault, BackupOptions([str(src)], source="fl")).errors == []
    # the second backup answers every file from the files cache, flags included
    summary = backup_files(vault, BackupOptions([str(src)], source="fl"))
    assert summary.errors == [] and summary.bytes_read == 0
    point = vault.resolve_point("latest", source="fl")
    reader = TreeReader(vault)
    root = root_node(point)
    wanted = {
        "imm.txt": FL_IMMUTABLE,
        "app.log": FL_APPEND,
        "nodump.bin": FL_NODUMP,
        "noatime.txt": FL_NOATIME,
        "folder": FL_IMMUTABLE,
        "folder/inner.log": FL_APPEND,
        "skipdir": FL_NODUMP,
        "plain.txt": 0,
    }
    for rel, flags in wanted.items():
        node = reader.lookup(root, f"{src}/{rel}")
        assert node is not None and node.flags == flags, rel

    dst = ext4("b")
    result = restore_files(vault, point, RestoreOptions(dst))
    assert result.errors == [] and result.warnings == []
    out = dst / str(src).lstrip("/")
    for rel in [*FLAGGED, *PLAIN]:
        assert _lsattr(out / rel) == _lsattr(src / rel), rel
        assert (out / rel).is_dir() or (out / rel).read_bytes() == (src / rel).read_bytes()
    # immutable and append-only really hold after the restore
    with pytest.raises(PermissionError):
        open(out / "imm.txt", "ab").close()
    with pytest.raises(PermissionError):
        (out / "folder" / "new").write_bytes(b"x")
    with pytest.raises(PermissionError):
        open(out / "app.log", "wb").close()
    with open(out / "app.log", "ab") as f:
        f.write(b"more")

    # a second restore over them replaces the immutable and append-only files (as root)
    again = restore_files(vault, point, RestoreOptions(dst))
    assert again.errors == [] and again.warnings == []
    assert (out / "app.log").read_bytes() == (src / "app.log").read_bytes()
    assert _lsattr(out / "imm.txt") == _lsattr(src / "imm.txt")


def test_exclude_nodump_and_flag_changes(ext4: Callable[[str], Path], vault: Vault) -> None:
    src = _source(ext4("a"))
    opts = BackupOptions([str(src)], source="nd", exclude_nodump=True)
    assert backup_files(vault, opts).errors == []
    point = vault.resolve_point("latest", source="nd")
    reader = TreeReader(vault)
    root = root_node(point)
    for rel in ["nodump.bin", "skipdir", "skipdir/x.txt"]:
        assert reader.lookup(root, f"{src}/{rel}") is None, rel
    for rel in ["imm.txt", "folder/inner.log", "plain.txt"]:
        assert reader.lookup(root, f"{src}/{rel}") is not None, rel

    # a flag change is a metadata change: diff names it, the next backup records it
    subprocess.run(["chattr", "+A", str(src / "plain.txt")], check=True)
    changes = diff_live(vault, point, str(src))
    assert any(c.path.endswith("/plain.txt") and "flags" in c.fields for c in changes)
    backup_files(vault, opts)
    node = TreeReader(vault).lookup(
        root_node(vault.resolve_point("latest", source="nd")), f"{src}/plain.txt"
    )
    assert node is not None and node.flags == FL_NOATIME


def test_cli_exclude_nodump(
    ext4: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "cli-vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", "flags passphrase")
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    src = _source(ext4("a"))
    argv = ["backup", "files", str(src), "--source", "c", "--exclude-nodump", "--json"]
    capsys.readouterr()
    assert main(argv) == 0
    done = json.loads(capsys.readouterr().out)
    # imm, app, noatime, plain, folder/inner; not nodump.bin nor skipdir/x.txt
    assert done["files"] == 5 and done["dirs"] >= 1 and done["errors"] == 0

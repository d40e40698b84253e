"""Backups into a served vault with a backup token, restores with a restore token."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.server.conftest import Runner, Served, ServedVault


def test_files_and_disk_through_the_server(
    served: Served, vault: ServedVault, run: Runner, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "big").write_bytes(os.urandom(3 << 20))
    (src / "sub" / "small").write_text("hello through the server\n")
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(2 << 20) + bytes(2 << 20) + os.urandom(1 << 20))
    backup, restore = vault.tokens["backup"], vault.tokens["restore"]

    code, _, err = run(backup, "backup", "files", str(src), "--vault", vault.url)
    assert code == 0, err
    code, _, err = run(backup, "backup", "disk", str(disk), "--vault", vault.url, "--json")
    assert code == 0, err
    code, out, err = run(backup, "backup", "files", str(src), "--vault", vault.url, "--json")
    assert code == 0, err  # incremental: reads the parent's trees through the server

    target = tmp_path / "restored"
    code, _, err = run(
        restore, "restore", "files", "latest", "--target", str(target), "--vault", vault.url
    )
    assert code == 0, err
    back = target / src.relative_to("/")
    assert (back / "big").read_bytes() == (src / "big").read_bytes()
    assert (back / "sub" / "small").read_bytes() == (src / "sub" / "small").read_bytes()
    out_disk = tmp_path / "restored.img"
    code, _, err = run(
        restore, "restore", "disk", "latest", "--to", str(out_disk), "--vault", vault.url
    )
    assert code == 0, err
    assert out_disk.read_bytes() == disk.read_bytes()
    code, out, err = run(restore, "check", "--vault", vault.url, "--json")
    assert code == 0, err

    # the restore token wrote nothing but its locks, which it removed again
    code, out, _ = run(served.admin, "audit", "--server", served.url, "--json", "--limit", "5000")
    mine = [e for e in json.loads(out) if e["vault"] == vault.name and e["role"] == "restore"]
    writes = {e["target"].partition("/")[0] for e in mine if e["action"] in ("put", "delete")}
    assert mine and writes <= {"locks"}
    assert all(e["status"] < 400 for e in mine)

"""``strongroom ls`` on disk points: disks, volumes with filesystem type/label/UUID, folders."""

from __future__ import annotations

from pathlib import Path

from tests.image._vm import cli

from ._disks import LUKS_PASSPHRASE
from .conftest import Guest


def test_ls_disks_volumes_and_folders(vault_env: Guest, tmp_path: Path) -> None:
    g = vault_env
    r = cli("ls", g.points["gpt"], "/disk", "--json")
    assert r.code == 0, r.err
    vols = {d["path"]: d for d in r.json()}
    assert vols["/disk/p1"]["fstype"] == "ext4" and vols["/disk/p1"]["label"] == "guestroot"
    assert vols[f"/disk/lvm-{g.vg}-data"]["fstype"] == "ext4"
    r = cli("ls", g.points["gpt"], "/disk/p1/etc", "--json")
    assert r.code == 0, r.err
    assert "/disk/p1/etc/hostname" in [d["path"] for d in r.json()]
    r = cli("ls", g.points["gpt"], "/disk/p1", "--json")
    owned = next(d for d in r.json() if d["path"] == "/disk/p1/owned")
    assert (owned["uid"], owned["gid"], owned["mode"]) == (100_000, 200_000, "0640")


def test_ls_luks_needs_passphrase(vault_env: Guest, tmp_path: Path) -> None:
    g = vault_env
    r = cli("ls", g.points["mbr"], "/disk/luks-p7")
    assert r.code == 1 and "--luks-passphrase-file" in r.err and "Traceback" not in r.err
    key = tmp_path / "key"
    key.write_text(LUKS_PASSPHRASE + "\n")
    r = cli("ls", g.points["mbr"], "/disk/luks-p7", "--luks-passphrase-file", key)
    assert r.code == 0, r.err
    assert "/disk/luks-p7/secret.txt" in r.out.split()


def test_unreadable_filesystem_is_named(vault_env: Guest) -> None:
    r = cli("ls", vault_env.points["gpt"], "/disk/p5")  # swap
    assert r.code == 1 and "no filesystem" in r.err and "serve" in r.err
    assert "Traceback" not in r.err

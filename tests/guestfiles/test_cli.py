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


def test_find_searches_every_volume(vault_env: Guest) -> None:
    g = vault_env
    r = cli("find", "*/hostname", "--point", g.points["gpt"], "--json")
    assert r.code == 0, r.err
    paths = sorted(d["path"] for d in r.json())
    # ext4 p1, XFS on LVM and btrfs p4 all hold etc/hostname; the swap partition is a note
    assert paths == sorted(
        ["/disk/p1/etc/hostname", f"/disk/lvm-{g.vg}-xfs/etc/hostname", "/disk/p4/etc/hostname"]
    )
    assert all(d["point"] == g.points["gpt"] for d in r.json())
    r = cli("find", "*/hostname", "--point", g.points["gpt"])
    assert r.code == 0 and "note: /" not in r.out and "no filesystem" in r.out + r.err
    r = cli("find", "*.nothing", "--point", g.points["mbr"])
    assert r.code == 3 and "no match" in r.out and "--luks-passphrase-file" in r.err


def test_restore_files_options_and_json(vault_env: Guest, tmp_path: Path) -> None:
    g = vault_env
    target = tmp_path / "t"
    base: list[str | Path] = [
        "restore",
        "files",
        g.points["gpt"],
        "/disk/p1/etc",
        "--target",
        target,
    ]
    r = cli(*base, "--dry-run", "--json")
    assert r.code == 0 and not target.exists() and r.json()["actions"], r.err
    r = cli(*base, "--verify", "--json")
    assert r.code == 0, r.err
    assert r.json()["verified"] == r.json()["files"] == 41
    hostname = target / "disk/p1/etc/hostname"
    assert hostname.read_text() == "guest\n"
    hostname.write_text("changed")
    r = cli(*base, "--on-conflict", "skip", "--json")
    assert r.code == 0 and hostname.read_text() == "changed"
    r = cli(*base, "--on-conflict", "keep-both", "--json")
    assert r.code == 0 and len(r.json()["kept_both"]) == 41
    r = cli(*base)
    assert r.code == 0 and hostname.read_text() == "guest\n"


def test_damaged_filesystem_reports_and_restores_the_rest(vault_env: Guest, tmp_path: Path) -> None:
    r = cli("restore", "files", vault_env.points["damaged"], "--target", tmp_path, "--json")
    assert r.code == 3, r.err
    failed = [e["path"] for e in r.json()["errors"]]
    assert len(failed) == 1 and failed[0].endswith("/disk/whole/bad/x.bin"), failed
    assert (tmp_path / "disk/whole/bad/y.txt").read_text() == "fine\n"
    assert (tmp_path / "disk/whole/good/a.txt").read_text() == "good\n"
    assert not (tmp_path / "disk/whole/bad/x.bin").exists()


def test_diff_live_against_a_restored_folder(vault_env: Guest, tmp_path: Path) -> None:
    g = vault_env
    sel = "/disk/p1/etc"
    assert cli("restore", "files", g.points["gpt"], sel, "--target", tmp_path).code == 0
    live = tmp_path / "disk/p1/etc"
    r = cli("diff", g.points["gpt"], sel, "--live", live, "--json")
    assert r.code == 0 and r.json() == [], r.out + r.err
    (live / "hostname").write_text("other\n")
    (live / "new.conf").write_text("x")
    r = cli("diff", g.points["gpt"], sel, "--live", live, "--json")
    got = {d["path"].removeprefix(str(live)): d["change"] for d in r.json()}
    assert got == {"/hostname": "modified", "/new.conf": "added", "": "metadata"}, got
    r = cli("diff", g.points["gpt"], "--live", live)
    assert r.code == 1 and "/DISK/VOLUME/PATH" in r.err

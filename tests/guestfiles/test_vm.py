"""Files inside VM points: the sample VM (vda qcow2: GPT + ext4; vdb raw: MBR + FAT16),
backed up offline from its XML twice, with files changed in both disks in between."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.image.sample import SampleVM, change_sample_vm, make_sample_vm
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import PASSPHRASE
from tests.image._vm import cli

from ._disks import loop_file, mounted, sh


@dataclass
class VMPoints:
    vault: Path
    vm: SampleVM
    points: list[str]
    copies: list[Path]  # vda as raw at each point


@pytest.fixture(scope="module")
def vm_points(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMPoints]:
    root = tmp_path_factory.mktemp("vmpoints")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_VAULT", str(root / "vault"))
        mp.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
        assert cli("init", "--kdf-memory", "1", "--kdf-time", "1").code == 0
        vm = make_sample_vm(root / "vm", formats=("qcow2", "raw"))
        points, copies = [], []
        for n in (1, 2):
            r = cli("backup", "vm", "--xml", vm.xml, "--json")
            assert r.code == 0, r.err
            points.append(r.json()["point"])
            copy = root / f"vda-{n}.raw"
            sh("qemu-img", "convert", "-O", "raw", vm.disks[0].path, copy)
            copies.append(copy)
            if n == 1:
                change_sample_vm(vm)
        yield VMPoints(root / "vault", vm, points, copies)


@pytest.fixture
def vmp(vm_points: VMPoints, monkeypatch: pytest.MonkeyPatch) -> VMPoints:
    monkeypatch.setenv("STRONGROOM_VAULT", str(vm_points.vault))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    return vm_points


def test_ls_lists_the_disks_and_their_volumes(vmp: VMPoints) -> None:
    r = cli("ls", vmp.points[1], "/")
    assert r.code == 0 and r.out.split() == ["/vda", "/vdb"], r.out + r.err
    r = cli("ls", vmp.points[1], "/vda", "--json")
    assert [(d["path"], d["fstype"], d["label"]) for d in r.json()] == [("/vda/p1", "ext4", "root")]
    r = cli("ls", vmp.points[1], "/vdb", "--json")
    assert [(d["path"], d["fstype"]) for d in r.json()] == [("/vdb/p1", "fat16")]
    r = cli("ls", "latest", "/vda/p1/etc", "--source", vmp.vm.name)
    assert r.code == 0 and "/vda/p1/etc/hostname" in r.out.split(), r.out + r.err


def test_find_and_diff_between_two_vm_points(vmp: VMPoints) -> None:
    old, new = vmp.points
    r = cli("find", "*/notes.txt", "--point", old, "--point", new, "--json")
    assert r.code == 0, r.err
    assert [(d["point"], d["path"]) for d in r.json()] == [
        (old, "/vda/p1/home/demo/notes.txt"), (new, "/vda/p1/home/demo/notes.txt")
    ]  # fmt: skip
    r = cli("diff", old, new, "--json")
    assert r.code == 0, r.err
    changed = {d["path"]: d["change"] for d in r.json()}
    assert changed["/vda/p1/home/demo/notes.txt"] == "modified"
    assert "/vda/p1/srv/blob.bin" not in changed and "/vda/p1/etc/hostname" not in changed
    assert any(p.startswith("/vdb/p1/") and c == "added" for p, c in changed.items())
    assert "added" in changed.values()
    # the second point's parent is the first: the default comparison
    r2 = cli("diff", new, "--json")
    assert r2.code == 0 and r2.json() == r.json()


def test_unchanged_files_compared_by_chunk_ids(vmp: VMPoints) -> None:
    from strongroom.guestfiles.browse import diff_guest_points
    from strongroom.guestfiles.tree import GuestPoint

    vault = Vault.open(LocalBackend(vmp.vault), PASSPHRASE)
    try:
        old, new = (vault.resolve_point(p) for p in vmp.points)
        result = diff_guest_points(GuestPoint(vault, old), GuestPoint(vault, new))
    finally:
        vault.close()
    # hostname, motd, syslog, blob.bin, RANDOM.BIN... kept their places on the disk: decided
    # from chunk ids, reading at most the chunks they share with what changed
    assert result.read == 0 and not result.failures, vars(result)
    assert result.by_chunk_ids + result.partly_read >= 5, vars(result)


def test_restore_from_the_second_point(vmp: VMPoints, tmp_path: Path) -> None:
    target = tmp_path / "out"
    r = cli("restore", "files", vmp.points[1], "/vda/p1/home", "/vdb/p1", "--target", target,
            "--verify", "--json")  # fmt: skip
    assert r.code == 0, r.err
    with loop_file(vmp.copies[1]) as dev:
        part = sh("losetup", "-f", "--show", "-o", str(1 << 20), vmp.copies[1]).strip()
        try:
            with mounted(part, tmp_path / "m", "mount", "-o", "ro") as m:
                want = (m / "home/demo/notes.txt").read_bytes()
                mtime = os.stat(m / "home/demo/notes.txt").st_mtime_ns
        finally:
            sh("losetup", "-d", part)
        del dev
    got = target / "vda/p1/home/demo/notes.txt"
    assert got.read_bytes() == want and os.stat(got).st_mtime_ns == mtime
    assert (target / "vdb/p1/README.TXT").read_text().startswith("generation 1")

"""Issue 18's image details: ``--disk-dir`` is created, new images keep the original's
mode, and a raw image a qemu-nbd writes to is in use."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from strongroom.image.sample import SampleVM, make_sample_vm

from ._vm import MiB, cli, identical
from .test_bad_input import _fails, _hold

pytestmark = pytest.mark.usefixtures("image_tools")


@pytest.fixture
def vm(vault_env: Path, tmp_path: Path) -> SampleVM:
    return make_sample_vm(tmp_path / "vm", sizes=(32 * MiB, 16 * MiB))


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def test_as_new_creates_the_disk_dir_and_keeps_modes(vm: SampleVM, tmp_path: Path) -> None:
    qcow2, raw = (Path(d.path) for d in vm.disks)
    qcow2.chmod(0o640)
    raw.chmod(0o604)
    result = cli("backup", "vm", "--xml", vm.xml, "--json")
    assert result.code == 0, result.err
    point = result.json()["point"]
    folder = tmp_path / "new" / "deeper"
    result = cli("restore", "vm", point, "--as-new", "copy", "--disk-dir", folder, "--json")
    assert result.code == 0, result.err
    disks = {d["target"]: Path(d["path"]) for d in result.json()["disks"]}
    assert all(p.parent == folder for p in disks.values())
    assert sorted(_mode(p) for p in disks.values()) == [0o604, 0o640]
    assert identical(disks[vm.disks[1].target], "raw", raw, "raw")
    one = tmp_path / "one.img"
    result = cli("restore", "disk", point, vm.disks[1].target, "--to", one)
    assert result.code == 0, result.err
    assert _mode(one) == 0o604


def test_disk_dir_that_cannot_be_made_is_one_line(vm: SampleVM, tmp_path: Path) -> None:
    result = cli("backup", "vm", "--xml", vm.xml, "--json")
    point = result.json()["point"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(
        cli("restore", "vm", point, "--as-new", "c", "--disk-dir", blocker / "sub"),
        "cannot create disk folder",
    )


def test_a_raw_image_written_through_qemu_nbd_is_in_use(vm: SampleVM) -> None:
    raw = Path(vm.disks[1].path)
    result = cli("backup", "vm", "--xml", vm.xml, "--json")
    assert result.code == 0, result.err
    vm_point = result.json()["point"]
    proc = _hold(raw, "raw")
    try:
        _fails(cli("backup", "disk", raw), "in use", "qemu-nbd")
    finally:
        proc.terminate()
        proc.wait()
    proc = _hold(raw, "raw", "--read-only")  # a reader: an offline backup may read too
    try:
        result = cli("backup", "disk", raw, "--json")
        assert result.code == 0, result.err
        _fails(cli("restore", "vm", vm_point, "--in-place"), "in use")  # but not write
    finally:
        proc.terminate()
        proc.wait()

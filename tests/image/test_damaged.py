"""A damaged image is an error, never a backup of zeros.

qemu reads data clusters past the end of a truncated file as zeros and its block status
calls them zero, so these images used to back up "successfully" with nothing in them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ._vm import CLIResult, MiB, cli, identical, run

pytestmark = pytest.mark.usefixtures("image_tools")

_XML = (
    "<domain type='qemu'><name>damaged</name><devices>"
    "<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
    "<source file='{path}'/><target dev='vda' bus='virtio'/></disk>"
    "</devices></domain>"
)


def _source(tmp_path: Path) -> Path:
    """64 MiB raw, 3 MiB of random data at 1 MiB, the rest holes."""
    raw = tmp_path / "d.raw"
    run("qemu-img", "create", "-q", "-f", "raw", raw, "64M")
    with open(raw, "r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(3 * MiB))
    return raw


def _convert(raw: Path, fmt: str, dest: Path) -> Path:
    options = ["-o", "force_size=on"] if fmt == "vpc" else []
    run("qemu-img", "convert", "-O", fmt, *options, raw, dest)
    return dest


def _rejected(result: CLIResult, image: Path) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and str(image) in lines[0], result.err
    assert "Traceback" not in result.err
    assert cli("points", "--json").json() == []


def test_truncated_qcow2_disk_and_vm(vault_env: Path, tmp_path: Path) -> None:
    """The issue's reproduction, through ``backup disk`` and ``backup vm --xml``."""
    image = _convert(_source(tmp_path), "qcow2", tmp_path / "t.qcow2")
    os.truncate(image, 300000)
    result = cli("backup", "disk", image)
    _rejected(result, image)
    assert "damaged" in result.err
    xml = tmp_path / "dom.xml"
    xml.write_text(_XML.format(fmt="qcow2", path=image))
    result = cli("backup", "vm", "--xml", xml, "--json")
    _rejected(result, image)
    assert "disk vda" in result.err and "damaged" in result.err


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "qcow", "parallels", "qed", "vhdx", "vpc"])
def test_other_truncated_formats(vault_env: Path, tmp_path: Path, fmt: str) -> None:
    image = _convert(_source(tmp_path), fmt, tmp_path / f"t.{fmt}")
    whole = image.stat().st_size
    # vhdx keeps its data before 2 MiB of metadata at the end; the others hold it early.
    os.truncate(image, whole - 2 * MiB if fmt == "vhdx" else whole // 3)
    _rejected(cli("backup", "disk", image, "--format", fmt), image)


def test_truncated_flat_vmdk_extent(vault_env: Path, tmp_path: Path) -> None:
    raw = _source(tmp_path)
    image = tmp_path / "split.vmdk"
    run("qemu-img", "convert", "-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", raw, image)
    extent = tmp_path / "split-f001.vmdk"
    os.truncate(extent, 2 * MiB)
    result = cli("backup", "disk", image)
    _rejected(result, image)
    assert str(extent) in result.err


def test_truncated_backing_file(vault_env: Path, tmp_path: Path) -> None:
    base = _convert(_source(tmp_path), "qcow2", tmp_path / "base.qcow2")
    top = tmp_path / "top.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
    os.truncate(base, 300000)
    result = cli("backup", "disk", top)
    assert result.code == 1 and str(base) in result.err, result.err
    assert cli("points", "--json").json() == []


def test_healthy_images_still_back_up(vault_env: Path, tmp_path: Path) -> None:
    """Real holes are still skipped unread; chains and external data files are not damage."""
    raw = _source(tmp_path)
    sparse = tmp_path / "big.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", sparse, "64G")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 7 5G 1M", sparse)
    result = cli("backup", "disk", sparse, "--json")
    assert result.code == 0, result.err
    assert result.json()["bytes_read"] == MiB
    base = _convert(raw, "qcow2", tmp_path / "base.qcow2")
    top = tmp_path / "top.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
    run("qemu-io", "-f", "qcow2", "-c", "write -P 9 0 64k", top)
    external = tmp_path / "ext.qcow2"
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={tmp_path / 'ext.data'}",
        external,
        "64M",
    )
    run("qemu-io", "-f", "qcow2", "-c", "write -P 3 1M 1M", external)
    for image in (top, external, _convert(raw, "vdi", tmp_path / "ok.vdi")):
        result = cli("backup", "disk", image, "--json")
        assert result.code == 0, result.err
        dest = tmp_path / f"back-{image.name}.img"
        assert cli("restore", "disk", result.json()["point"], "--to", dest).code == 0
        fmt = "vdi" if image.suffix == ".vdi" else "qcow2"
        assert identical(dest, "raw", image, fmt)


def test_in_place_restore_over_a_damaged_image(vault_env: Path, tmp_path: Path) -> None:
    image = _convert(_source(tmp_path), "qcow2", tmp_path / "t.qcow2")
    xml = tmp_path / "dom.xml"
    xml.write_text(_XML.format(fmt="qcow2", path=image))
    result = cli("backup", "vm", "--xml", xml, "--json")
    assert result.code == 0, result.err
    point = result.json()["point"]
    intact = tmp_path / "intact.qcow2"
    run("cp", "--sparse=always", image, intact)
    os.truncate(image, 300000)
    result = cli("restore", "vm", point, "--in-place")
    assert result.code == 1 and "damaged" in result.err and "--force" in result.err, result.err
    result = cli("restore", "vm", point, "--in-place", "--force", "--json")
    assert result.code == 0, result.err
    assert result.json()["disks"][0]["mode"] == "new"
    assert identical(image, "qcow2", intact, "qcow2")

"""Offline backups skip an image file whose metadata (device, inode, size, mtime, ctime) is
the parent point's, and read it again on any doubt (issue 19)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from strongroom.image import unchanged

from ._vm import MiB, cli, identical, run

SIZE = 8 * MiB


def _read_bytes() -> int:
    """Bytes this process has read with read/pread so far (all threads)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _image(tmp_path: Path, fmt: str) -> Path:
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as f:
        f.write(os.urandom(SIZE // 2))
        f.truncate(SIZE)
    if fmt == "raw":
        return raw
    image = tmp_path / f"disk.{fmt}"
    run("qemu-img", "convert", "-f", "raw", "-O", fmt, raw, image)
    raw.unlink()
    return image


def _backup(*args: str | Path) -> tuple[dict[str, Any], int]:
    """A backup's summary and the bytes this process read meanwhile."""
    before = _read_bytes()
    result = cli("backup", *args, "--json")
    assert result.code == 0, result.err
    return result.json(), _read_bytes() - before


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files count as settled at once (the tests' images are seconds old)."""
    monkeypatch.setattr(unchanged, "SETTLE_NS", 0)


def _poke(path: Path, fmt: str, offset: int) -> None:
    """Change one guest byte and put the mtime back: only the ctime shows the write."""
    st = path.stat()
    if fmt == "raw":
        with path.open("r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))
    else:
        run("qemu-io", "-f", fmt, "-c", f"write -P 0x5a {offset} 1", path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_an_unchanged_image_is_not_read_and_a_poked_one_is(
    vault_env: Path, tmp_path: Path, settled: None, fmt: str
) -> None:
    image = _image(tmp_path, fmt)
    first, _ = _backup("disk", image)
    assert first["bytes_read"] >= SIZE // 2
    assert first["disks"][0]["change_mode"] == "full-read-hash"
    again, read = _backup("disk", image)
    disk = again["disks"][0]
    assert again["bytes_read"] == 0 and disk["change_mode"] == "unchanged-file-state"
    assert disk["stats"]["data_bytes"] == first["disks"][0]["stats"]["data_bytes"]
    assert again["parent"] == first["point"]
    if fmt == "raw":
        assert read < SIZE // 8, f"read {read} bytes for an unchanged image"
    forced, _ = _backup("disk", image, "--force-read")
    assert forced["bytes_read"] == first["bytes_read"]
    # one byte changed, mtime put back: the ctime differs, so the image is read again
    _poke(image, fmt, SIZE // 4)
    poked, read = _backup("disk", image)
    assert poked["bytes_read"] >= SIZE // 2
    assert poked["disks"][0]["change_mode"] == "full-read-hash"
    if fmt == "raw":
        assert read >= SIZE // 2
    out = tmp_path / f"restored.{fmt}"
    assert cli("restore", "disk", poked["point"], "--to", out).code == 0
    assert identical(out, fmt, image, fmt)
    # and the point that reused its parent's map restores the image as it was then
    back = tmp_path / "unchanged.raw"
    assert cli("restore", "disk", again["point"], "--to", back).code == 0
    assert not identical(back, "raw", image, fmt)
    mid = tmp_path / "forced.raw"
    assert cli("restore", "disk", forced["point"], "--to", mid).code == 0
    assert identical(back, "raw", mid, "raw")


def test_a_just_written_image_is_read_again(vault_env: Path, tmp_path: Path) -> None:
    """Modified within the settle window, a file's timestamps cannot vouch for it: a later
    write in the same timestamp tick would not show."""
    image = _image(tmp_path, "raw")
    first, _ = _backup("disk", image)
    again, _ = _backup("disk", image)
    assert first["bytes_read"] == again["bytes_read"] >= SIZE // 2


def test_an_offline_vm_reuses_only_its_unchanged_disks(
    vault_env: Path, tmp_path: Path, settled: None
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    disks = [_image(a, "raw"), _image(b, "qcow2")]
    xml = tmp_path / "vm.xml"
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>"
        f"<source file='{path}'/><target dev='{target}' bus='virtio'/></disk>"
        for path, fmt, target in zip(disks, ("raw", "qcow2"), ("vda", "vdb"), strict=True)
    )
    xml.write_text(
        f"<domain type='qemu'><name>u</name><uuid>{uuid.uuid4()}</uuid>"
        f"<devices>{devices}</devices></domain>"
    )
    first, _ = _backup("vm", "--xml", xml)
    assert all(d["change_mode"] == "full-read-hash" for d in first["disks"])
    _poke(disks[0], "raw", 100)
    second, _ = _backup("vm", "--xml", xml)
    modes = {d["target"]: d["change_mode"] for d in second["disks"]}
    assert modes == {"vda": "full-read-hash", "vdb": "unchanged-file-state"}
    reads = {d["target"]: d["stats"]["bytes_read"] for d in second["disks"]}
    assert reads["vda"] >= SIZE // 2 and reads["vdb"] == 0
    assert cli("backup", "vm", "u", "--force-read").code == 2

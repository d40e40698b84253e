"""A vhdx is read in proportion to its data (its own allocation table; qemu reports none),
and any doubt about the table means reading it all (issue 19)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from strongroom.image.vhdxmap import vhdx_data_extents

from ._vm import MiB, cli, identical, run

GiB = 1 << 30


def _vhdx(path: Path, size: int, *writes: int, opts: str = "block_size=1M") -> Path:
    run("qemu-img", "create", "-q", "-f", "vhdx", "-o", opts, path, str(size))
    for offset in writes:
        run("qemu-io", "-f", "vhdx", "-c", f"write -P 0x61 {offset} 65536", path)
    return path


def _covered(extents: list[tuple[int, int]], offset: int) -> bool:
    return any(start <= offset < start + length for start, length in extents)


def test_a_sparse_vhdx_is_read_in_proportion_to_its_data(vault_env: Path, tmp_path: Path) -> None:
    writes = [0, 300 * MiB + 12345 * 512, 1 * GiB - 65536]
    image = _vhdx(tmp_path / "d.vhdx", 1 * GiB, *writes)
    result = cli("backup", "disk", image, "--json")
    assert result.code == 0, result.err
    doc = result.json()
    disk = doc["disks"][0]
    assert disk["read_mode"] == "vhdx-bat"
    # three 64 KiB writes, each in one 1 MiB block: three blocks read of 1024
    assert doc["bytes_read"] <= 3 * MiB, doc["bytes_read"]
    out = tmp_path / "restored.raw"
    assert cli("restore", "disk", doc["point"], "--to", out).code == 0
    assert identical(out, "raw", image, "vhdx")


def test_vhdx_extents_follow_the_bat_past_sector_bitmap_entries(tmp_path: Path) -> None:
    """With 1 MiB blocks a sector bitmap entry follows every 4096 payload entries: blocks
    past 4 GiB are found at the right BAT index."""
    writes = [5 * MiB, 4 * GiB + 3 * MiB, 7 * GiB + 17 * MiB]
    image = _vhdx(tmp_path / "big.vhdx", 8 * GiB, *writes)
    extents = vhdx_data_extents(image, 8 * GiB)
    assert extents is not None
    assert all(_covered(extents, w) for w in writes)
    assert sum(length for _, length in extents) == 3 * MiB
    assert not _covered(extents, 4 * GiB + 4 * MiB) and not _covered(extents, 6 * GiB)


def test_a_fixed_vhdx_is_data_throughout_unless_its_blocks_say_zero(tmp_path: Path) -> None:
    opts = "block_size=1M,subformat=fixed"
    image = _vhdx(tmp_path / "fixed.vhdx", 8 * MiB, opts=opts + ",block_state_zero=off")
    assert vhdx_data_extents(image, 8 * MiB) == [(0, 8 * MiB)]
    zeroed = _vhdx(tmp_path / "zeroed.vhdx", 8 * MiB, 2 * MiB, opts=opts)
    assert vhdx_data_extents(zeroed, 8 * MiB) == [(2 * MiB, MiB)]


def test_doubt_reads_everything(tmp_path: Path) -> None:
    image = _vhdx(tmp_path / "d.vhdx", 64 * MiB, 0)
    assert vhdx_data_extents(image, 64 * MiB) == [(0, MiB)]
    assert vhdx_data_extents(image, 32 * MiB) is None  # qemu says another size
    logged = tmp_path / "logged.vhdx"
    shutil.copyfile(image, logged)
    with logged.open("r+b") as f:  # a log GUID in the first header: a log to replay
        f.seek(64 * 1024 + 48)
        f.write(b"\x01" * 16)
    assert vhdx_data_extents(logged, 64 * MiB) is None
    other = tmp_path / "other.vhdx"
    shutil.copyfile(image, other)
    with other.open("r+b") as f:  # the two region tables differ
        f.seek(256 * 1024 + 20)
        f.write(b"\xff")
    assert vhdx_data_extents(other, 64 * MiB) is None
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * 4096)
    assert vhdx_data_extents(raw, 4096) is None
    assert vhdx_data_extents(tmp_path / "missing.vhdx", 4096) is None


@pytest.mark.parametrize("block", ["1M", "32M"])
def test_every_written_byte_lies_in_an_extent(tmp_path: Path, block: str) -> None:
    size = 256 * MiB
    writes = [0, 33 * MiB + 512, 100 * MiB, size - 65536]
    image = _vhdx(tmp_path / "d.vhdx", size, *writes, opts=f"block_size={block}")
    extents = vhdx_data_extents(image, size)
    assert extents is not None
    assert all(_covered(extents, w) and _covered(extents, w + 65535) for w in writes)

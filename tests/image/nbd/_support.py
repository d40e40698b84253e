"""Helpers shared by the NBD tests: running the peer tools and building expected data."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from strongroom.image.nbd import Extent

TOOLS = ("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo", "nbdcopy")
MiB = 1024 * 1024
KiB = 1024


def run(*args: str | Path) -> str:
    """Run a peer tool; a failure shows its output."""
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


def qemu_io(image: Path, fmt: str, *commands: str) -> None:
    args: list[str | Path] = ["qemu-io", "-f", fmt]
    for command in commands:
        args += ["-c", command]
    run(*args, image)


def nbd_uri(sock: Path, export: str = "") -> str:
    return f"nbd+unix:///{export}?socket={sock}"


def write_pattern(buf: bytearray, offset: int, length: int, byte: int) -> None:
    buf[offset : offset + length] = bytes([byte]) * length


def runs(extents: Iterable[Extent], mask: int) -> list[tuple[int, int, bool]]:
    """Merge consecutive extents by whether ``flags & mask`` is set: (offset, length, set)."""
    out: list[tuple[int, int, bool]] = []
    for extent in extents:
        state = bool(extent.flags & mask)
        if out and out[-1][2] == state and out[-1][0] + out[-1][1] == extent.offset:
            out[-1] = (out[-1][0], out[-1][1] + extent.length, state)
        else:
            out.append((extent.offset, extent.length, state))
    return out


def ranges_with(extents: Iterable[Extent], mask: int, present: bool) -> list[tuple[int, int]]:
    """(offset, length) of the merged runs whose ``flags & mask`` is ``present``."""
    return [(off, n) for off, n, state in runs(extents, mask) if state == present]


def check_contiguous(extents: list[Extent], offset: int, end: int) -> None:
    pos = offset
    for extent in extents:
        assert extent.offset == pos and extent.length > 0
        pos = extent.end
    assert pos == end

"""Disk image formats and the ``qemu-img`` calls strongroom needs: info, create, lock probe.

Every image format qemu reads can be backed up; restores can write the formats listed in
:data:`WRITE_FORMATS`.  Missing qemu tools raise :class:`ImageError` with an install hint.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Final

from strongroom.errors import ImageError
from strongroom.records import dataclass

__all__ = [
    "READ_FORMATS",
    "WRITE_FORMATS",
    "ImageInfo",
    "check_read_format",
    "check_write_format",
    "create_image",
    "extension_for",
    "format_from_extension",
    "image_info",
    "image_lock_error",
    "is_lock_message",
    "qemu_img_path",
    "run_qemu_img",
]

INSTALL_HINT: Final = "install it with `apt-get install qemu-utils`"
READ_FORMATS: Final = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi", "qed", "qcow", "parallels")
WRITE_FORMATS: Final = ("raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi")
_EXTENSIONS: Final = {
    "raw": ".img",
    "qcow2": ".qcow2",
    "vmdk": ".vmdk",
    "vhdx": ".vhdx",
    "vpc": ".vhd",
    "vdi": ".vdi",
}
_FROM_EXTENSION: Final = {
    ".img": "raw",
    ".raw": "raw",
    ".qcow2": "qcow2",
    ".vmdk": "vmdk",
    ".vhdx": "vhdx",
    ".vhd": "vpc",
    ".vpc": "vpc",
    ".vdi": "vdi",
}
# vpc rounds the size to a CHS geometry unless told to keep it exact.
_CREATE_OPTIONS: Final = {"vpc": ["-o", "force_size=on,subformat=dynamic"]}
# qemu's words for an image lock held elsewhere ("block-vpc: ..." must not match "lock").
_LOCK_PATTERN: Final = re.compile(r'Failed to get (shared )?"[^"]+" lock|Is another process using')
_TIMEOUT: Final = 120.0


def qemu_img_path() -> str:
    path = shutil.which("qemu-img")
    if path is None:
        raise ImageError(f"qemu-img not found: {INSTALL_HINT}")
    return path


def check_read_format(fmt: str) -> str:
    if fmt not in READ_FORMATS:
        raise ImageError(
            f"unsupported disk format {fmt!r}: strongroom reads {', '.join(READ_FORMATS)}"
        )
    return fmt


def check_write_format(fmt: str) -> str:
    if fmt not in WRITE_FORMATS:
        raise ImageError(
            f"unsupported target format {fmt!r}: strongroom writes {', '.join(WRITE_FORMATS)}"
        )
    return fmt


def extension_for(fmt: str) -> str:
    """File name extension for a new image of ``fmt`` (``.img`` for raw)."""
    return _EXTENSIONS.get(fmt, f".{fmt}")


def format_from_extension(path: str | Path) -> str | None:
    """The format a file name suggests (``x.vhd`` -> ``vpc``), or None."""
    return _FROM_EXTENSION.get(Path(path).suffix.lower())


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    actual_size: int


def run_qemu_img(args: list[str], timeout: float = _TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``qemu-img ARGS`` with its output captured (text) and no standard input."""
    return subprocess.run(
        [qemu_img_path(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    return lines[0].removeprefix("qemu-img: ").removeprefix("qemu-io: ")


def image_info(path: Path, fmt: str | None = None, *, force_share: bool = True) -> ImageInfo:
    """What qemu-img says about an image; ``fmt=None`` lets qemu probe the format."""
    if not path.exists():
        raise ImageError(f"disk image not found: {path}")
    args = ["info", "--output=json"]
    if force_share:
        args.append("-U")
    if fmt is not None:
        args += ["-f", fmt]
    proc = run_qemu_img([*args, str(path)])
    if proc.returncode != 0:
        raise ImageError(f"cannot read disk image {path}: {_first_line(proc.stderr)}")
    doc = json.loads(proc.stdout)
    return ImageInfo(
        format=str(doc.get("format", fmt or "raw")),
        virtual_size=int(doc["virtual-size"]),
        actual_size=int(doc.get("actual-size", 0)),
    )


def is_lock_message(text: str) -> bool:
    """Whether qemu's error ``text`` says another process holds the image's lock."""
    return _LOCK_PATTERN.search(text) is not None


# qemu's file locks: byte 100 + n is held by a user of permission n (0 consistent read,
# 1 write), byte 200 + n by one that does not share it.  A raw image's writer (qemu-nbd
# without -r) shares writing, so qemu-img and qemu-io open it without complaint; the lock on
# byte 101 is what says it is being written.
_QEMU_PERM_BYTE = 100
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux


def _qemu_holder(path: Path, for_write: bool) -> str | None:
    """Whether a qemu process has the image open for writing (or, ``for_write``, at all)."""
    first, count = (_QEMU_PERM_BYTE, 2) if for_write else (_QEMU_PERM_BYTE + 1, 1)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None  # qemu-img could open it; whatever this is, it holds no qemu lock
    try:
        probe = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, first, count, 0)
        held = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, probe))[0] != fcntl.F_UNLCK
    except OSError:
        return None  # no OFD locks here (not Linux, or a file system without them)
    finally:
        os.close(fd)
    if not held:
        return None
    how = "open" if for_write else "open for writing"
    return f"a qemu process (a VM or qemu-nbd) holds it {how}"


def image_lock_error(path: Path, fmt: str, *, for_write: bool = False) -> str | None:
    """Why the image is in use (a qemu process holds its lock), or None when it is free.

    qemu guards images with OFD locks.  Opening without ``-U`` (force-share) fails while a
    running VM or a writable qemu-nbd holds the image; ``for_write`` probes a read-write
    open (``qemu-io -c quit``), which also fails while any reader holds a qcow2 image.
    """
    qemu_io = shutil.which("qemu-io") if for_write else None
    if qemu_io is not None:
        proc = subprocess.run(
            [qemu_io, "-f", fmt, "-c", "quit", str(path)],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    else:
        proc = run_qemu_img(["info", "--output=json", "-f", fmt, str(path)])
    if proc.returncode == 0:
        return _qemu_holder(path, for_write)
    text = proc.stderr.strip()
    if is_lock_message(text):
        return _first_line(text)
    raise ImageError(f"cannot read disk image {path}: {_first_line(text)}")


def create_image(path: Path, fmt: str, size: int, *, display: Path | None = None) -> None:
    """``qemu-img create -f fmt path size`` (sparse; exact virtual size)."""
    check_write_format(fmt)
    options = _CREATE_OPTIONS.get(fmt, [])
    proc = run_qemu_img(["create", "-q", "-f", fmt, *options, str(path), str(size)])
    if proc.returncode != 0:
        message = _first_line(proc.stderr)
        shown = display or path
        if "No space left" in message or "File too large" in message:
            raise ImageError(f"no space left on device writing {shown}")
        raise ImageError(f"cannot create {fmt} image {shown}: {message}")

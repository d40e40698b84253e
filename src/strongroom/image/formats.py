"""Disk image formats and the ``qemu-img`` calls strongroom needs: info, create, lock probe.

Every image format qemu reads can be backed up; restores can write the formats listed in
:data:`WRITE_FORMATS`.  Missing qemu tools raise :class:`ImageError` with an install hint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from strongroom.errors import ImageError

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


def _run_qemu_img(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [qemu_img_path(), *args],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT,
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
    proc = _run_qemu_img([*args, str(path)])
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
        proc = _run_qemu_img(["info", "--output=json", "-f", fmt, str(path)])
    if proc.returncode == 0:
        return None
    text = proc.stderr.strip()
    if is_lock_message(text):
        return _first_line(text)
    raise ImageError(f"cannot read disk image {path}: {_first_line(text)}")


def create_image(path: Path, fmt: str, size: int, *, display: Path | None = None) -> None:
    """``qemu-img create -f fmt path size`` (sparse; exact virtual size)."""
    check_write_format(fmt)
    options = _CREATE_OPTIONS.get(fmt, [])
    proc = _run_qemu_img(["create", "-q", "-f", fmt, *options, str(path), str(size)])
    if proc.returncode != 0:
        message = _first_line(proc.stderr)
        shown = display or path
        if "No space left" in message or "File too large" in message:
            raise ImageError(f"no space left on device writing {shown}")
        raise ImageError(f"cannot create {fmt} image {shown}: {message}")

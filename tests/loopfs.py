"""A real file system of a given type on a loop device, for tests that need one (root only)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted(where: Path, fstype: str, size: int = 48 << 20) -> Iterator[Path]:
    """``mkfs.<fstype>`` (ext2, ext3 or ext4: no root reserve) on an image of ``size`` bytes
    in ``where``, mounted at ``where/<fstype>`` for the block; unmounted after it.  Skips the
    test when not root."""
    if os.geteuid() != 0:
        pytest.skip("loop mounts need root")
    image, mount = where / f"{fstype}.img", where / fstype
    with image.open("wb") as f:
        f.truncate(size)
    subprocess.run([f"mkfs.{fstype}", "-q", "-m", "0", "-F", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)

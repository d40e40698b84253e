"""Where the harness writes restores: a fresh journaled ext4 on a loop device, by default.

Why: this kind of machine's root file system is ext4 *without* a journal, and there ext4 will
not reuse an inode deleted in the last minute (five while its inode table block is dirty):
every file created scans past each such inode with a buffer-cache lookup.  Creating 20,000
files there took 15-17 s of kernel time within minutes of deleting 20,000 others, and 0.6 s
on a journaled ext4 (``docs/benchmarks.md``, session 13).  A tree restore then measured
which tool followed a deletion more closely, not the tool.  Servers restore onto journaled
file systems, so the harness restores onto one: an ext4 made with ``mkfs.ext4``'s defaults
on a sparse file in the workdir, attached with direct I/O (no second page cache for the
loop device) and mounted with ``discard`` (deleted restores give their space back).

``--restore-fs workdir`` restores into the workdir itself, as before; so does a machine where
the loop device cannot be set up (not root, no ``losetup``): the report says which was used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GiB = 1 << 30
_MAX_SIZE = 256 * GiB  # sparse: only what restores write takes space


class RestoreFs:
    """The folder restores go to, and how it was made (``describe``)."""

    def __init__(self, workdir: Path, mode: str) -> None:
        self.workdir = workdir
        self.mode = mode
        self.root = workdir / "restore"
        self.journaled = False
        self.describe = "the workdir's own file system"
        self._image = workdir / "restore-fs.img"
        self._mount = workdir / "restore-fs"
        self._device: str | None = None

    def __enter__(self) -> RestoreFs:
        if self.mode == "loop":
            problem = self._attach()
            if problem is None:
                self.root, self.journaled = self._mount / "restore", True
                self.root.mkdir()
                self.describe = "a fresh journaled ext4 on a loop device (direct I/O, discard)"
            else:
                self.describe += f" (no loop file system: {problem})"
        return self

    def __exit__(self, *exc: object) -> None:
        self._detach()

    def _attach(self) -> str | None:
        """Make, attach and mount the file system; why not, or None."""
        if os.geteuid() != 0:
            return "not root"
        for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
            if shutil.which(tool) is None:
                return f"no {tool}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._detach()  # a killed run's leftovers
        free = shutil.disk_usage(self.workdir).free
        size = max(GiB, min(_MAX_SIZE, free // GiB * GiB))
        with self._image.open("wb") as f:
            f.truncate(size)
        try:
            self._device = _run("losetup", "-f", "--show", "--direct-io=on", str(self._image))
            _run("mkfs.ext4", "-q", "-F", self._device)
            self._mount.mkdir(exist_ok=True)
            _run("mount", "-o", "discard", self._device, str(self._mount))
        except subprocess.CalledProcessError as exc:
            self._detach()
            return (exc.stderr or str(exc)).strip().splitlines()[-1]
        return None

    def _detach(self) -> None:
        if os.path.ismount(self._mount):
            subprocess.run(["umount", str(self._mount)], check=False, capture_output=True)
        if self._device is None and self._image.exists():
            found = subprocess.run(
                ["losetup", "-j", str(self._image)], check=False, capture_output=True, text=True
            ).stdout
            self._device = found.split(":", 1)[0] or None
        if self._device is not None:
            subprocess.run(["losetup", "-d", self._device], check=False, capture_output=True)
            self._device = None
        self._image.unlink(missing_ok=True)


def _run(*argv: str) -> str:
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return done.stdout.strip()

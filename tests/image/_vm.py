"""Helpers for the image engine tests: run the CLI, compare images with qemu-img, measure."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strongroom.cli.main import main
from strongroom.image.sample import SampleVM

MiB = 1 << 20
TOOLS = ("qemu-img", "qemu-nbd", "qemu-io", "sfdisk", "mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy")
PACKAGES = "qemu-utils e2fsprogs dosfstools mtools fdisk"


@dataclass
class CLIResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli(*argv: str | Path) -> CLIResult:
    """Run ``strongroom ARGV`` in-process (vault and passphrase from the environment)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return CLIResult(code, out.getvalue(), err.getvalue())


def run(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc.stdout


def identical(a: Path, fmt_a: str, b: Path, fmt_b: str) -> bool:
    """``qemu-img compare`` says the two images hold the same guest-visible bytes."""
    proc = subprocess.run(
        ["qemu-img", "compare", "-q", "-f", fmt_a, "-F", fmt_b, str(a), str(b)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise AssertionError(f"qemu-img compare failed: {proc.stderr}")
    return proc.returncode == 0


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def raw_content(path: Path, fmt: str, tmp: Path) -> bytes:
    """The guest-visible bytes of an image."""
    if fmt == "raw":
        return path.read_bytes()
    out = tmp / f".content-{os.urandom(4).hex()}.raw"
    run("qemu-img", "convert", "-f", fmt, "-O", "raw", path, out)
    try:
        return out.read_bytes()
    finally:
        out.unlink()


def nonzero_bytes(data: bytes, block: int) -> int:
    """Bytes in ``block``-sized blocks holding any non-zero byte."""
    whole = len(data) - len(data) % block
    blocks = np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, block)
    return int(np.count_nonzero(blocks.any(axis=1))) * block + (len(data) - whole)


def chunk_changes(old: bytes, new: bytes, chunk: int = MiB) -> tuple[int, int]:
    """(chunks that differ and are non-zero in ``new``, chunks that differ and are zero)."""
    written = zeroed = 0
    for pos in range(0, len(new), chunk):
        a, b = old[pos : pos + chunk], new[pos : pos + chunk]
        if a != b:
            if b.count(0) == len(b):
                zeroed += 1
            else:
                written += 1
    return written, zeroed


def snapshot(vm: SampleVM, dest: Path) -> dict[str, Path]:
    """Sparse copies of the VM's disks (by target) and XML, as they are now."""
    dest.mkdir(parents=True)
    copies = {}
    for disk in vm.disks:
        copies[disk.target] = dest / Path(disk.path).name
        run("cp", "--sparse=always", disk.path, copies[disk.target])
    shutil.copy(vm.xml, dest / Path(vm.xml).name)
    return copies

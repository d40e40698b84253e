"""CLI calls against a given vault, and content hashes of images and restored disks."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSPHRASE
from tests.image._vm import CLIResult, cli, run

from ._guest import Guest


def sr(vault: Path, *argv: str | Path) -> CLIResult:
    """``strongroom ARGV`` with ``vault`` and the test passphrase in the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_VAULT", str(vault))
        mp.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
        return cli(*argv)


def init_vault(vault: Path) -> Path:
    result = sr(vault, "init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "4")
    assert result.code == 0, result.err
    return vault


def backup(vault: Path, guest: Guest, *args: str) -> dict[str, Any]:
    result = sr(vault, "backup", "vm", guest.name, "--json", *args)
    assert result.code == 0, result.err
    doc: dict[str, Any] = result.json()
    return doc


def disk(doc: dict[str, Any], target: str) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in doc["disks"] if d["target"] == target)
    return found


def reason(doc: dict[str, Any], target: str) -> str | None:
    value = disk(doc, target)["tracking"]["reason"]
    return str(value) if value else None


def image_sha(path: Path, fmt: str, tmp: Path) -> str:
    """SHA-256 of an image's guest-visible bytes."""
    out = tmp / f".sha-{os.urandom(4).hex()}.raw"
    run("qemu-img", "convert", "-U", "-f", fmt, "-O", "raw", path, out)
    try:
        return hashlib.sha256(out.read_bytes()).hexdigest()
    finally:
        out.unlink()


def restored_sha(vault: Path, point: str, target: str, tmp: Path) -> str:
    """Restore one disk of ``point`` to a new qcow2 image and hash its content."""
    out = tmp / f"restored-{point[:8]}-{target}-{os.urandom(3).hex()}.qcow2"
    result = sr(vault, "restore", "disk", point, target, "--to", out)
    assert result.code == 0, result.err
    try:
        return image_sha(out, "qcow2", tmp)
    finally:
        out.unlink()


def freeze_log(guest: Guest) -> list[str]:
    rc, out = guest.sh.run("cat /var/log/fsfreeze.log")
    return [line.split()[0] for line in out.splitlines() if line.strip()] if rc == 0 else []


def restored_files(
    vault: Path, point: str, target: str, tmp: Path, names: list[str]
) -> tuple[dict[str, str], int]:
    """Files of the ext4 filesystem on a restored disk, and ``e2fsck -fn``'s exit code."""
    out = tmp / f"restored-{point[:8]}-{target}-{os.urandom(3).hex()}.img"
    result = sr(vault, "restore", "disk", point, target, "--to", out, "--format", "raw")
    assert result.code == 0, result.err
    try:
        files = {name: run("debugfs", "-R", f"cat /{name}", out).strip() for name in names}
        fsck = subprocess.run(["e2fsck", "-fn", str(out)], capture_output=True, check=False)
        return files, fsck.returncode
    finally:
        out.unlink()

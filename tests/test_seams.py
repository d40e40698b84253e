"""The engines' view of a vault: declared by the engines (``files/vaultview.py``,
``image/vaultview.py``), satisfied by :class:`Vault` whatever its storage.

mypy checks the assignments below (a ``Vault`` that lost a method an engine uses fails the
type check); the scan keeps the engines off the vault's internals and the storage's classes.
"""

from __future__ import annotations

import re
from pathlib import Path

from strongroom.files import vaultview as files_view
from strongroom.image import vaultview as image_view
from strongroom.storage import LocalBackend, MemoryBackend, RetryingBackend
from strongroom.storage.backend import REMOTE, capabilities_of
from strongroom.vault import Vault
from strongroom.vault.commit import Committing
from tests.faults import FaultyBackend

SRC = Path(__file__).resolve().parents[1] / "src" / "strongroom"
ENGINES = ("files", "image", "guestfiles")
# What no engine may reach: the vault's internals, pack names, the storage's classes.
FORBIDDEN = re.compile(
    r"\bvault\.(index|reader|keys|backend|catalog)\b|\bLocalBackend\b|\bpack_name\b|[\"']data/"
    r"|strongroom\.vault\.(index|reader|pack|crypto|writer|catalog|stored)\b"
)


def test_a_vault_is_every_view_the_engines_declare(local_vault: Vault) -> None:
    files: files_view.FilesVault = local_vault
    restore: files_view.RestoreVault = local_vault
    backup: files_view.BackupVault = local_vault
    diff: files_view.DiffVault = local_vault
    image: image_view.ImageVault = local_vault
    image_backup: image_view.ImageBackupVault = local_vault
    image_restore: image_view.ImageRestoreVault = local_vault
    committing: Committing = local_vault
    for view in (files, restore, backup, diff, image, image_backup, image_restore, committing):
        assert view is local_vault


def test_engines_use_no_vault_internals() -> None:
    found = []
    for engine in ENGINES:
        for path in sorted((SRC / engine).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if FORBIDDEN.search(code):
                    found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert found == []


def test_the_library_ships_no_test_tools() -> None:
    """The fault-injecting backend is the tests' (``tests/faults.py``): nothing under ``src``
    defines or names it."""
    found = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if re.search(r"\bFaulty\w*|\bFaultRule\b|\bInjectedFault\b", path.read_text())
    ]
    assert found == []


def test_wrappers_forward_capabilities(tmp_path: Path) -> None:
    local = LocalBackend(tmp_path)
    assert local.capabilities.local_root == tmp_path
    for wrapped in (FaultyBackend(local), RetryingBackend(FaultyBackend(local))):
        assert capabilities_of(wrapped) == local.capabilities
    assert capabilities_of(MemoryBackend()) == REMOTE
    assert capabilities_of(FaultyBackend(MemoryBackend())).local_root is None

"""Fixtures for ``strongroom serve``: a vault holding one point of the sample VM."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strongroom.image.sample import make_sample_vm
from tests.conftest import PASSPHRASE
from tests.image._vm import cli


@dataclass
class Served:
    vault: Path
    point: str
    restored: dict[str, Path]  # target -> raw image from `restore disk`


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, image_tools: None) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    vault = root / "vault"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_VAULT", str(vault))
        mp.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
        assert cli("init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "4").code == 0
        vm = make_sample_vm(root / "vm", formats=("qcow2", "raw"))
        backup = cli("backup", "vm", "--xml", vm.xml, "--json")
        assert backup.code == 0, backup.err
        point = backup.json()["point"]
        restored = {}
        for target in ("vda", "vdb"):
            out = root / f"restored-{target}.img"
            result = cli("restore", "disk", point, target, "--to", out)
            assert result.code == 0, result.err
            restored[target] = out
    yield Served(vault, point, restored)


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short folder for unix sockets (tmp_path can exceed the 108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="srsrv-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)

"""Fixtures for the image engine tests: real qemu tools and real filesystems.

A missing tool FAILS the tests (never skips them): ``apt-get install -y qemu-utils
e2fsprogs dosfstools mtools fdisk``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strongroom.image.sample import SampleVM, change_sample_vm, make_sample_vm
from tests.conftest import PASSPHRASE

from ._vm import PACKAGES, TOOLS, cli, snapshot


@pytest.fixture(scope="session")
def image_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y {PACKAGES}")


@pytest.fixture
def vault_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_tools: None) -> Path:
    """An initialized vault that the CLI finds through the environment."""
    vault = tmp_path / "vault"
    monkeypatch.setenv("STRONGROOM_VAULT", str(vault))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    result = cli("init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "4")
    assert result.code == 0, result.err
    return vault


@dataclass
class History:
    """A sample VM backed up twice, with copies of its disks as they were at each point.

    After the second point the VM is changed once more, so its current state matches
    neither point.
    """

    root: Path
    vm: SampleVM
    points: list[str] = field(default_factory=list)
    copies: list[dict[str, Path]] = field(default_factory=list)

    def fmt(self, target: str) -> str:
        return next(d.format for d in self.vm.disks if d.target == target)

    def disk(self, target: str) -> Path:
        return Path(next(d.path for d in self.vm.disks if d.target == target))


def _backup(xml: str) -> str:
    result = cli("backup", "vm", "--xml", xml, "--json")
    assert result.code == 0, result.err
    point: str = result.json()["point"]
    return point


def build_history(root: Path, formats: tuple[str, str]) -> Iterator[History]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRONGROOM_VAULT", str(root / "vault"))
        mp.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
        assert cli("init", "--kdf-memory", "1", "--kdf-time", "1", "--pack-size", "4").code == 0
        vm = make_sample_vm(root / "vm", formats=formats)
        history = History(root, vm)
        for n in (1, 2):
            history.points.append(_backup(vm.xml))
            history.copies.append(snapshot(vm, root / f"at-point-{n}"))
            change_sample_vm(vm)
        yield history


@pytest.fixture(scope="module", params=[("qcow2", "raw"), ("vpc", "vmdk")], ids=str)
def history(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, image_tools: None
) -> Iterator[History]:
    formats = request.param
    yield from build_history(tmp_path_factory.mktemp("-".join(formats)), formats)


@pytest.fixture
def hist_env(history: History, monkeypatch: pytest.MonkeyPatch) -> History:
    """The history with its vault in the environment for CLI calls."""
    monkeypatch.setenv("STRONGROOM_VAULT", str(history.root / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    return history

"""Guest disks built once per session with the real tools (root needed: loop devices,
mounts), backed up as disk points into one vault."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE
from tests.image._vm import cli

from ._disks import TOOLS, build_damaged, build_fat, build_gpt, build_mbr, build_whole


@dataclass
class Guest:
    root: Path
    vault: Path
    vg: str
    disks: dict[str, Path] = field(default_factory=dict)
    points: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="session")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run scripts/setup.sh")
    root = tmp_path_factory.mktemp("guest")
    g = Guest(root, root / "vault", vg="srg" + secrets.token_hex(4))
    work = root / "work"
    work.mkdir()
    names = ("gpt", "mbr", "whole", "fat12", "fat32", "damaged")
    g.disks = {name: root / f"{name}.raw" for name in names}
    build_gpt(g.disks["gpt"], g.vg, work)
    build_mbr(g.disks["mbr"], work)
    build_whole(g.disks["whole"], work)
    build_fat(g.disks["fat12"], 12, work)
    build_fat(g.disks["fat32"], 32, work)
    build_damaged(g.disks["damaged"], work)
    with _env(g.vault):
        assert cli("init", "--kdf-memory", "1", "--kdf-time", "1").code == 0
        for name, path in g.disks.items():
            r = cli("backup", "disk", path, "--json")
            assert r.code == 0, r.err
            g.points[name] = r.json()["point"]
    yield g


@contextlib.contextmanager
def _env(vault: Path) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("STRONGROOM_VAULT", "STRONGROOM_PASSWORD")}
    os.environ["STRONGROOM_VAULT"] = str(vault)
    os.environ["STRONGROOM_PASSWORD"] = PASSPHRASE
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def vault_env(guest: Guest, monkeypatch: pytest.MonkeyPatch) -> Guest:
    monkeypatch.setenv("STRONGROOM_VAULT", str(guest.vault))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PASSPHRASE)
    return guest

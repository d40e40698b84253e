"""Every error path ends the backup job, thaws the guest and drops the new checkpoint, so
nothing is committed and the next backup continues the old chain."""

from __future__ import annotations

import glob
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt_qemu
import pytest

import libvirt
import strongroom.image.libvirt.backup as lbackup
import strongroom.image.libvirt.session as lsession
from strongroom.errors import ImageError

from ._guest import Guest
from ._helpers import backup, disk, freeze_log, init_vault, sr


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    g = make_guest("fail")
    g.start()
    g.wait_agent()
    yield g
    g.remove()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory, guest: Guest) -> Path:
    path = init_vault(tmp_path_factory.mktemp("fail") / "vault")
    backup(path, guest)
    return path


def _freeze_status(g: Guest) -> str:
    reply = libvirt_qemu.qemuAgentCommand(g.dom, '{"execute":"guest-fsfreeze-status"}', 10, 0)
    return str(json.loads(reply)["return"])


def _ours(g: Guest) -> list[str]:
    return [
        cp.getName() for cp in g.dom.listAllCheckpoints() if cp.getName().startswith("strongroom-")
    ]


def _assert_clean(g: Guest, vault: Path, checkpoints: list[str], points: int) -> None:
    assert g.dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE  # the job was ended
    assert _freeze_status(g) == "thawed"
    assert _ours(g) == checkpoints  # the new checkpoint was dropped
    assert not glob.glob(f"{tempfile.gettempdir()}/strongroom-backup-*")
    assert len(_point_ids(vault)) == points


def _point_ids(vault: Path) -> list[str]:
    return sorted(p.name for p in (vault / "points").iterdir())


def _fails(vault: Path, g: Guest, *args: str) -> str:
    result = sr(vault, "backup", "vm", g.name, *args)
    assert result.code == 1, result.out
    return result.err


def test_read_error_aborts_thaws_and_drops_the_checkpoint(
    guest: Guest, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = guest
    before, points, log = _ours(g), len(_point_ids(vault)), freeze_log(g)
    real = lbackup.read_job  # type: ignore[attr-defined]

    def failing(*args: Any, **kwargs: Any) -> Any:
        if args[3].disk.target == "vdb":
            raise ImageError("injected read failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(lbackup, "read_job", failing)
    assert "injected read failure" in _fails(vault, g)
    _assert_clean(g, vault, before, points)
    assert freeze_log(g) == [*log, "freeze", "thaw"]
    monkeypatch.undo()
    g.write("vda", 8)
    doc = backup(vault, g)  # the old chain is intact
    assert disk(doc, "vda")["read_mode"] == "libvirt-pull-dirty-bitmap"


def test_commit_error_drops_the_checkpoint(
    guest: Guest, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, points = _ours(guest), len(_point_ids(vault))

    def failing(*args: Any, **kwargs: Any) -> None:
        raise ImageError("injected commit failure")

    monkeypatch.setattr(lbackup, "commit_point", failing)
    assert "injected commit failure" in _fails(vault, guest)
    _assert_clean(guest, vault, before, points)


def test_begin_error_while_frozen_thaws(
    guest: Guest, vault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = guest
    before, points, log = _ours(g), len(_point_ids(vault)), freeze_log(g)
    real = lsession.backup_xml  # type: ignore[attr-defined]
    monkeypatch.setattr(
        lsession, "backup_xml", lambda s, f, d, k: real(s, Path("/nonexistent"), d, k)
    )
    assert "cannot start the backup" in _fails(vault, g, "--consistency", "app")
    _assert_clean(g, vault, before, points)
    assert freeze_log(g) == [*log, "freeze", "thaw"]


def test_app_without_agent_fails_and_auto_falls_back(guest: Guest, vault: Path) -> None:
    g = guest
    g.sh.check("killall qemu-ga")
    try:
        points = len(_point_ids(vault))
        assert "app-consistent" in _fails(vault, g, "--consistency", "app")
        assert len(_point_ids(vault)) == points
        doc = backup(vault, g)  # auto
        assert doc["consistency"] == "crash"
        result = sr(vault, "vm", "list", g.name, "--json")
        assert result.json()[0]["last_point"]["consistency"] == "crash"
    finally:
        g.sh.check(
            "for p in /sys/class/virtio-ports/*; do "
            "qemu-ga -d -m virtio-serial -p /dev/${p##*/} -t /run -F/etc/fsfreeze-hook; done"
        )

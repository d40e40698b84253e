"""The instant-recovery commands' bad input: one line, the right exit code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.image._vm import cli

from .conftest import Served


@pytest.fixture
def instant_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRONGROOM_INSTANT_DIR", str(tmp_path / "instant"))
    return tmp_path / "instant"


def test_nothing_running(instant_root: Path) -> None:
    listed = cli("instant", "list", "--json")
    assert listed.code == 0 and json.loads(listed.out) == []
    for command in ("finalize", "abort"):
        result = cli("instant", command, "nosuch")
        assert result.code == 1 and "no instant recovery named 'nosuch'" in result.err
        assert "Traceback" not in result.err
    assert cli("instant", "finalize", "../etc").code == 1


def test_restore_instant_usage(
    served: Served, instant_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRONGROOM_VAULT", str(served.vault))
    for extra in (
        ["--in-place", "--as-new", "x"],
        ["--in-place", "--format", "raw"],
        ["--in-place", "--start"],
        ["--as-new", "x", "--format", "raw"],
        ["--as-new", "x", "--force"],
    ):
        assert cli("restore", "vm", served.point, "--instant", *extra).code == 2, extra

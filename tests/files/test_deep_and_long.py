"""A tree 1,000 folders deep and paths longer than PATH_MAX (4096 bytes): backup, restore,
ls, find, diff between points and diff --live all work (exit 0), and restores are equal."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.cli.main import main
from tests.files._support import digest_tree, make_chain

PW = "deep passphrase"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The trees on a tmpfs: unmounting removes them at once (deleting 1,000-deep trees
    from a disk takes seconds, and pytest's own recursive clean-up cannot)."""
    monkeypatch.setenv("STRONGROOM_VAULT", str(tmp_path / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    fs = tmp_path / "fs"
    fs.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(fs)]
    if subprocess.run(mount, check=False, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = fs / "src"
        (src / "deep").mkdir(parents=True)
        (src / "long").mkdir()
        make_chain(src / "deep", ["d"] * 1000, b"at the bottom")
        make_chain(src / "long", ["n" * 200] * 30, b"far away")
        yield src
    finally:
        subprocess.run(["umount", str(fs)], check=True)


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, (argv, err[-500:])
    return json.loads(out)


def test_deep_and_long_trees_round_trip(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = env
    first = _run(capsys, ["backup", "files", str(src), "--source", "s"])
    assert isinstance(first, dict) and first["errors"] == 0 and first["files"] == 2
    (src / "deep" / "d" / "new").write_text("changed")
    second = _run(capsys, ["backup", "files", str(src), "--source", "s"])
    assert isinstance(second, dict) and second["errors"] == 0

    for point in (first["point"], second["point"]):
        out = src.parent / f"out-{point[:6]}"
        done = _run(capsys, ["restore", "files", point, "--target", str(out)])
        assert (
            isinstance(done, dict)
            and done["errors"] == []
            and done["files"] == 2 + (point == second["point"])
        )
    restored = src.parent / f"out-{second['point'][:6]}" / os.path.relpath(src, "/")
    assert digest_tree(restored) == digest_tree(src)
    again = _run(capsys, ["restore", "files", second["point"], "--target", str(src.parent / "o")])
    assert isinstance(again, dict) and again["errors"] == []
    again = _run(capsys, ["restore", "files", second["point"], "--target", str(src.parent / "o")])
    assert isinstance(again, dict) and again["errors"] == []  # over itself: every path exists

    found = _run(capsys, ["find", "leaf"])
    assert isinstance(found, list) and len(found) == 4  # two leaves in each of two points
    assert max(len(os.fsencode(f["path"])) for f in found) > 6000
    listed = _run(capsys, ["ls", second["point"], str(src), "-R"])
    assert isinstance(listed, list) and len(listed) == 2 + 1000 + 30 + 4 + 1
    changes = _run(capsys, ["diff", first["point"], second["point"]])
    assert isinstance(changes, list)
    assert {c["change"] for c in changes} == {"added", "metadata"}
    assert any(c["path"].endswith("/d/new") for c in changes)
    live = _run(capsys, ["diff", second["point"], "--live", str(src)])
    assert live == []
    (src / "deep" / "d" / "new").unlink()
    live = _run(capsys, ["diff", second["point"], "--live", str(src / "long")])
    assert live == []
    bottom = os.path.join(src / "long", *["n" * 200] * 30)
    assert len(bottom) > 6000
    assert _run(capsys, ["diff", second["point"], "--live", bottom]) == []
    assert _run(capsys, ["diff", second["point"], "--live", bottom + "/leaf"]) == []

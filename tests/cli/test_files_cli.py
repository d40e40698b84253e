"""The files commands end to end: exit codes 0, 1 and 3, --json output, progress-free runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.files import content, reading

PW = "cli passphrase"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    vault = tmp_path / "vault"
    monkeypatch.setenv("STRONGROOM_VAULT", str(vault))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "b.log").write_text("beta")
    (src / "sub" / "c.txt").write_bytes(os.urandom(100_000))
    return src


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> object:
    capsys.readouterr()
    assert main(argv) == code
    return json.loads(capsys.readouterr().out)


def test_backup_ls_find_diff_restore(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = env
    doc = _json(capsys, ["backup", "files", str(src), "--source", "s", "--tag", "t1", "--json"])
    assert isinstance(doc, dict)
    assert doc["files_new"] == 3 and doc["errors"] == 0 and doc["bytes_read"] > 100_000
    first = doc["point"]

    capsys.readouterr()
    assert main(["backup", "files", str(src), "--source", "s", "-e", "*.log"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    second = out[-1]
    assert len(second) == 64

    listed = _json(capsys, ["ls", second[:10], str(src), "--json"])
    assert isinstance(listed, list)
    assert sorted(e["path"] for e in listed) == [str(src / "a.txt"), str(src / "sub")]
    capsys.readouterr()
    assert main(["ls", "latest", str(src), "--source", "s", "--long", "-R"]) == 0
    assert "c.txt" in capsys.readouterr().out

    found = _json(capsys, ["find", "*.log", "--json"])
    assert isinstance(found, list)
    assert [(f["point"], f["path"]) for f in found] == [(first, str(src / "b.log"))]

    changes = _json(capsys, ["diff", second, "--json"])
    assert {"path": str(src / "b.log"), "change": "removed", "fields": []} in changes  # type: ignore[operator]
    (src / "a.txt").write_text("ALPHA")
    live = _json(capsys, ["diff", first, "--live", str(src), "--json"])
    assert isinstance(live, list)
    assert {(c["path"], c["change"]) for c in live} >= {(str(src / "a.txt"), "modified")}

    target = tmp_path / "out"
    res = _json(capsys, ["restore", "files", first, "--target", str(target), "--verify", "--json"])
    assert isinstance(res, dict) and res["errors"] == [] and res["verified"] == 3
    restored = target / os.path.relpath(src, "/")
    assert (restored / "a.txt").read_text() == "alpha"

    dry = _json(
        capsys,
        ["restore", "files", first, "--target", str(target), "--dry-run",
         "--on-conflict", "keep-both", "--json"],
    )  # fmt: skip
    assert isinstance(dry, dict)
    assert {
        "action": "keep-both",
        "path": str(restored / "a.txt") + ".restored-" + first[:8],
    } in dry["actions"]
    skipped = _json(
        capsys,
        ["restore", "files", first, "--target", str(target), "--on-conflict", "skip", "--json"],
    )
    assert isinstance(skipped, dict) and str(restored / "a.txt") in skipped["skipped"]


def test_errors_exit_1(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "files", str(tmp_path / "missing")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
    assert main(["backup", "files", str(env), "--source", "s"]) == 0
    assert main(["restore", "files", "ffff", "--target", str(tmp_path / "o")]) == 1
    assert main(["restore", "files", "latest", "--source", "s", "/not/there", "-t", "o"]) == 1
    assert "not in this recovery point" in capsys.readouterr().err
    assert main(["restore", "files", "latest", "-t", "o", "--on-conflict", "bogus"]) == 1


def test_unreadable_file_exits_3(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = content.open_for_reading

    def deny(path: bytes) -> int:
        if path.endswith(b"b.log"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(reading, "open_for_reading", deny)
    monkeypatch.setattr(reading, "_smallread", None)  # it would open b.log itself
    doc = _json(capsys, ["backup", "files", str(env), "--source", "s", "--json"], code=3)
    assert isinstance(doc, dict)
    assert doc["errors"] == 1
    assert doc["error_list"] == [{"path": str(env / "b.log"), "reason": "Permission denied"}]
    assert doc["files"] == 2


@pytest.fixture
def world_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="strongroom-nobody-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d)


def test_really_unreadable_as_unprivileged_user(
    world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child process drops to nobody and backs up a tree it cannot fully read."""
    src = world_dir / "src"
    src.mkdir()
    (src / "open").write_text("o")
    (src / "closed").write_text("c")
    (src / "closed").chmod(0o000)
    (src / "locked").mkdir()
    (src / "locked").chmod(0o000)
    monkeypatch.setenv("STRONGROOM_VAULT", str(world_dir / "vault"))
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(world_dir / "cache"))
    monkeypatch.setenv("HOME", str(world_dir))
    out = world_dir / "out.json"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            if main(["init", "--kdf-memory", "1", "--kdf-time", "1"]) == 0:
                with open(out, "w") as fh, contextlib.redirect_stdout(fh):
                    code = main(["backup", "files", str(src), "--json"])
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3
    doc = json.loads(out.read_text())
    assert {e["path"] for e in doc["error_list"]} == {str(src / "closed"), str(src / "locked")}
    assert doc["files"] == 1


def _usage(capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err, err


def test_empty_paths_and_bad_patterns_are_usage_errors(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(env)  # an empty path must not mean this folder
    empty = "an empty value names nothing"
    _usage(capsys, ["backup", "files", ""], empty)
    _usage(capsys, ["backup", "files", str(env), ""], empty)
    _usage(capsys, ["backup", "files", str(env), "--exclude", ""], empty)
    _usage(capsys, ["backup", "files", str(env), "--source", ""], empty)
    _usage(capsys, ["backup", "files", str(env), "--exclude", "[z-a]"], "bad character range")
    assert main(["backup", "files", str(env), "--source", "s"]) == 0
    _usage(capsys, ["restore", "files", "latest", "--source", "s", "", "-t", "o"], empty)
    _usage(capsys, ["restore", "files", "latest", "--source", "s", "[z-a]", "-t", "o"], "range")
    _usage(capsys, ["ls", "latest", "--source", "s", ""], empty)
    _usage(capsys, ["find", ""], empty)
    _usage(capsys, ["find", "/x/[z-a]"], "bad pattern '/x/[z-a]'")
    _usage(capsys, ["diff", "latest", "--source", "s", "--live", ""], empty)
    assert not (tmp_path / "o").exists()


def test_exclude_file_with_bad_lines_names_the_line(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patterns = tmp_path / "excludes"
    patterns.write_bytes(b"# comment\n*.log\n\n[z-a]\n")
    _usage(capsys, ["backup", "files", str(env), "--exclude-file", str(patterns)], ", line 4:")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\xff\xfe\n")
    _usage(capsys, ["backup", "files", str(env), "--exclude-file", str(binary)], ", line 1: a NUL")
    # bytes that are not UTF-8 are patterns of bytes, as file names are
    (env / os.fsdecode(b"skip-\xff.dat")).write_bytes(b"x")
    latin = tmp_path / "latin"
    latin.write_bytes(b"skip-\xff.*\n")
    doc = _json(capsys, ["backup", "files", str(env), "--exclude-file", str(latin), "--json"])
    assert isinstance(doc, dict) and doc["files"] == 3


def test_a_very_long_source_name_works_with_its_files_cache(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = "s" * 5000
    time.sleep(0.2)  # out of the racy window: every file goes into the cache
    doc = _json(capsys, ["backup", "files", str(env), "--source", source, "--json"])
    assert isinstance(doc, dict) and doc["files_new"] == 3 and doc["warnings"] == []
    again = _json(capsys, ["backup", "files", str(env), "--source", source, "--json"])
    assert isinstance(again, dict) and again["bytes_read"] == 0
    listed = _json(capsys, ["ls", "latest", "--source", source, str(env), "--json"])
    assert isinstance(listed, list) and len(listed) == 3


def test_listings_escape_control_characters_and_json_keeps_names(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = env / "odd"
    src.mkdir()
    names = {
        b"new\nline": "new\\nline",
        b"tab\there": "tab\\there",
        b"back\\slash": "back\\\\slash",
        b"esc\x1b[31mred": "esc\\033[31mred",
        b"latin1-\xe9\xff": "latin1-\\351\\377",
        "ünïcode".encode(): "ünïcode",
    }
    for raw in names:
        (src / os.fsdecode(raw)).write_bytes(b"x")
    first = _json(capsys, ["backup", "files", str(src), "--source", "s", "--json"])
    for raw in names:
        (src / os.fsdecode(raw)).write_bytes(b"changed")
    second = _json(capsys, ["backup", "files", str(src), "--source", "s", "--json"])
    assert isinstance(first, dict) and isinstance(second, dict)
    expected = sorted(f"{src}/{shown}" for shown in names.values())

    capsys.readouterr()
    assert main(["ls", "latest", "--source", "s", str(src)]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == expected
    assert main(["ls", "latest", "--source", "s", str(src), "--long"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(" ", 5)[-1] for line in lines) == expected
    assert main(["find", "*", "--source", "s"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "/odd/" in ln]
    assert sorted({ln.split("  ")[-1] for ln in lines}) == expected and len(lines) == 12
    assert main(["diff", first["point"], second["point"]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(ln[2:] for ln in lines if ln.startswith("M ")) == expected

    listed = _json(capsys, ["ls", "latest", "--source", "s", str(src), "--json"])
    assert isinstance(listed, list)
    assert sorted(e["path"] for e in listed) == sorted(str(src / os.fsdecode(n)) for n in names)

"""Everyday commands of issue 18: ``backup stdin``, ``cat``, hooks around ``backup files``,
and ``diff`` without ancestor-folder mtimes."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import FAST_KDF, PASSPHRASE

MiB = 1 << 20


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    loc = tmp_path / "vault"
    Vault.init(LocalBackend(loc), PASSPHRASE, kdf=FAST_KDF)
    values = {
        "STRONGROOM_VAULT": str(loc),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **values}


def cli_argv(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "strongroom.cli.main", *args])


def shell(
    command: str, env: dict[str, str], data: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["bash", "-c", command], input=data, capture_output=True, env=env, check=False, timeout=120
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# --- backup stdin and cat -----------------------------------------------------------------


def test_a_50_mb_stream_round_trips_through_cat(env: dict[str, str], tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    block = os.urandom(MiB)
    dump.write_bytes(b"".join(block[i:] + block[:i] for i in range(50)))  # some repeats
    done = shell(f"cat {dump} | {cli_argv('backup', 'stdin', '--name', 'db.sql', '--json')}", env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["size"] == 50 * MiB and doc["chunks"] > 10 and doc["path"] == "/db.sql"
    assert doc["source"].endswith(":stdin:db.sql")
    out = shell(cli_argv("cat", doc["point"], "/db.sql"), env)
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).digest() == hashlib.sha256(dump.read_bytes()).digest()
    listed = shell(cli_argv("ls", "-l", doc["point"], "/", "--json"), env)
    (node,) = json.loads(listed.stdout)
    assert node["mode"] in ("0600", "-rw-------", 0o600) or "600" in str(node["mode"])


def test_an_empty_stream_is_refused_unless_allowed(env: dict[str, str]) -> None:
    done = shell(f"false | {cli_argv('backup', 'stdin', '--name', 'x')}", env)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "the stream was empty" in err and "pipefail" in err and err.count("\n") == 1
    done = shell(f"set -o pipefail; false | {cli_argv('backup', 'stdin', '--name', 'x')}", env)
    assert done.returncode != 0
    done = shell(
        f"true | {cli_argv('backup', 'stdin', '--name', 'x', '--allow-empty', '--json')}", env
    )
    assert done.returncode == 0, done.stderr
    point = json.loads(done.stdout)["point"]
    assert shell(cli_argv("cat", point, "x"), env).stdout == b""
    assert json.loads(shell(cli_argv("points", "--json"), env).stdout)[0]["id"] == point


def test_a_failing_upstream_is_only_seen_with_pipefail(env: dict[str, str]) -> None:
    """A dump that dies half-way still gives a stream: only the shell can tell."""
    upstream = "{ echo partial; exit 3; }"
    backup = cli_argv("backup", "stdin", "--name", "d")
    assert shell(f"{upstream} | {backup}", env).returncode == 0
    assert shell(f"set -o pipefail; {upstream} | {backup}", env).returncode == 3


def test_stdin_bad_input(env: dict[str, str]) -> None:
    for name in ("a/b", "", ".."):
        done = shell(f"echo x | {cli_argv('backup', 'stdin', '--name', name)}", env)
        assert done.returncode == 2, (name, done.stderr)
    done = shell(f"echo x | {cli_argv('backup', 'stdin')}", env)
    assert done.returncode == 2 and b"--name" in done.stderr


def test_cat_bad_input_and_a_plain_file(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"hello\n")
    with open(src / "sparse", "wb") as f:
        f.truncate(3 * MiB)
        f.seek(MiB)
        f.write(b"in the middle")
    assert run(capsys, "backup", "files", str(src))[0] == 0
    out = shell(cli_argv("cat", "latest", f"{src}/sparse"), env).stdout
    assert out == (src / "sparse").read_bytes()
    code, _, err = run(capsys, "cat", "latest", f"{src}/nope")
    assert code == 1 and "not in recovery point" in err
    code, _, err = run(capsys, "cat", "latest", str(src))
    assert code == 1 and "not a file" in err
    done = shell(f"{cli_argv('cat', 'latest', f'{src}/sparse')} | head -c 1", env)
    assert done.returncode == 0 and done.stdout == b"\0"


# --- hooks ---------------------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a").write_text("alpha")
    return folder


def test_hooks_run_around_the_backup(
    env: dict[str, str], src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    pre = f'echo "pre $STRONGROOM_HOOK $STRONGROOM_SOURCE" >> {log}; echo noise'
    post = f'echo "post $STRONGROOM_STATUS $STRONGROOM_POINT" >> {log}'
    code, out, err = run(
        capsys, "backup", "files", str(src), "--pre-hook", pre, "--post-hook", post, "--json"
    )
    assert code == 0, err
    point = json.loads(out)["point"]  # the hook's output went to stderr, not into the JSON
    assert "noise" in err
    pre_line, post_line = log.read_text().splitlines()
    assert pre_line.startswith("pre pre ") and post_line == f"post success {point}"


def test_a_failed_pre_hook_stops_the_backup_and_runs_the_post_hook(
    env: dict[str, str], src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    post = f'echo "post $STRONGROOM_STATUS [$STRONGROOM_POINT]" >> {log}'
    code, _, err = run(
        capsys, "backup", "files", str(src), "--pre-hook", "exit 7", "--post-hook", post
    )
    assert code == 1
    assert err == "error: pre-hook failed (exit 7): exit 7; no backup was made\n"
    assert log.read_text() == "post failed []\n"
    assert run(capsys, "points", "--json")[1].strip() == "[]"


def test_the_post_hook_runs_when_the_backup_fails(
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "log"
    post = f'echo "post $STRONGROOM_STATUS" >> {log}; exit 1'
    monkeypatch.setenv("STRONGROOM_LOCK_WAIT", "0")
    v = Vault.open(LocalBackend(Path(env["STRONGROOM_VAULT"])), PASSPHRASE)
    with v.lock(exclusive=True):  # the backup cannot take its lock
        code, _, err = run(capsys, "backup", "files", str(tmp_path), "--post-hook", post)
    assert code == 1
    assert log.read_text() == "post failed\n"
    lines = err.splitlines()
    assert lines[0].startswith("warning: post-hook failed (exit 1)")
    assert lines[1].startswith("error: ") and len(lines) == 2


def test_a_failed_post_hook_after_a_good_backup_is_an_error(
    env: dict[str, str], src: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "backup", "files", str(src), "--post-hook", "exit 2", "--json")
    assert code == 1
    point = json.loads(out)["point"]
    committed = f"(the backup itself committed point {point[:12]})"
    assert err == f"error: post-hook failed (exit 2): exit 2 {committed}\n"
    assert json.loads(run(capsys, "points", "--json")[1])[0]["id"] == point


# --- diff ----------------------------------------------------------------------------------


def test_diff_leaves_out_ancestor_folders_whose_mtime_changed(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = tmp_path / "top"
    src = top / "src"
    src.mkdir(parents=True)
    (src / "a").write_text("alpha")
    assert run(capsys, "backup", "files", str(src))[0] == 0
    (top / "other").write_text("not backed up")  # changes top's mtime
    (src / "b").write_text("beta")  # changes src's mtime
    os.utime(top, ns=(1, 1))
    assert run(capsys, "backup", "files", str(src))[0] == 0
    code, out, _ = run(capsys, "diff", "latest", "--json")
    assert code == 0
    changes = {(c["path"], c["change"]) for c in json.loads(out)}
    assert changes == {(f"{src}/b", "added"), (str(src), "metadata")}
    os.chmod(top, 0o700)  # other metadata of an ancestor still shows
    assert run(capsys, "backup", "files", str(src))[0] == 0
    code, out, _ = run(capsys, "diff", "latest", "--json")
    assert {c["path"]: c["fields"] for c in json.loads(out)} == {str(top): ["mode"]}
    code, out, _ = run(capsys, "diff", "latest", "--live", str(tmp_path), "--json")
    assert str(top) not in {c["path"] for c in json.loads(out)}

"""A served vault in an S3 bucket with Object Lock: backup, forget, prune, restore, check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulators import Emulator
from tests.server.conftest import Runner, free_port
from tests.storage.test_objectlock import LOCK_BUCKET, lock_bucket, s3_client

__all__ = ["lock_bucket"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


@pytest.fixture
def lock_server(moto: Emulator, lock_bucket: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(vault URL, admin token, S3 prefix) of a server whose vault has 1-day object lock."""
    env = {**os.environ, **moto.env}
    data, prefix = tmp_path / "data", uuid.uuid4().hex[:12]
    made = _cli(env, "server", "init", "--data", str(data), "--json")
    assert made.returncode == 0, made.stderr
    location = f"s3://{lock_bucket}/{prefix}"
    added = _cli(env, "server", "vault", "add", "--data", str(data), "lk", location,
                 "--object-lock-days", "1")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "object-lock-days=1" in added.stdout
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", "server", "run", "--data", str(data),
         "--listen", f"127.0.0.1:{port}"],
        env=env,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/lk", json.loads(made.stdout)["token"], prefix
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.s3
def test_prune_keeps_what_object_lock_holds(
    lock_server: tuple[str, str, str], run: Runner, moto: Emulator, tmp_path: Path
) -> None:
    url, admin, prefix = lock_server
    server = url.rsplit("/", 1)[0]
    code, _, err = run(admin, "init", "--vault", url, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    code, _, err = run(admin, "settings", "--soft-delete-days", "0", "--vault", url)
    assert code == 0, err
    tokens = {}
    for role in ("backup", "restore", "maintenance"):
        code, out, err = run(admin, "token", "create", "--role", role, "--server", server, "--json")
        assert code == 0, err
        tokens[role] = json.loads(out)["token"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(300_000))
    code, out, err = run(tokens["backup"], "backup", "files", str(src), "--vault", url, "--json")
    assert code == 0, err
    first = json.loads(out)["point"]
    (src / "a").write_bytes(os.urandom(300_000))
    code, _, err = run(tokens["backup"], "backup", "files", str(src), "--vault", url)
    assert code == 0, err

    # forget writes a tombstone (not locked); prune cannot delete the locked point: it keeps
    # the point soft-deleted with its data, says so in one line and succeeds
    code, _, err = run(tokens["maintenance"], "forget", first, "--vault", url)
    assert code == 0, err
    code, out, err = run(tokens["maintenance"], "prune", "--vault", url)
    assert code == 0, err
    assert "retention (object lock) still holds" in out
    code, out, err = run(tokens["maintenance"], "prune", "--vault", url, "--json")
    assert code == 0, err
    assert json.loads(out)["locked"] == [f"points/{first}"]
    code, _, err = run(tokens["restore"], "check", "--read-data", "--vault", url)
    assert code == 0, err
    code, _, err = run(tokens["maintenance"], "undelete", first, "--vault", url)
    assert code == 0, err  # its data was kept, so it comes back whole
    target = tmp_path / "restored"
    code, _, err = run(tokens["restore"], "restore", "files", first, "--target", str(target),
                       "--vault", url)  # fmt: skip
    assert code == 0, err

    # every pack, index object and point carries retention the storage's credentials obey
    s3 = s3_client(moto)
    listing = s3.list_object_versions(Bucket=LOCK_BUCKET, Prefix=prefix + "/")["Versions"]
    content = [v for v in listing if v["Key"].split("/")[1] in ("data", "index", "points")]
    assert {v["Key"].split("/")[1] for v in content} == {"data", "index", "points"}
    for v in content:
        head = s3.head_object(Bucket=LOCK_BUCKET, Key=v["Key"], VersionId=v["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE"

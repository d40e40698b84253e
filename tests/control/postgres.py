"""A throw-away PostgreSQL cluster from Debian's packages, run as the ``postgres`` user (the
server refuses root) in a temporary folder, listening on a loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.server.conftest import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed (scripts/setup.sh installs `postgresql`)")
    return Path(found[-1]).parent


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


_CLUSTERS: dict[str, tuple[list[str], str, Path]] = {}


def restart_cluster(base: str) -> None:
    """Restart the cluster at ``base`` (fast shutdown: every connection to it breaks)."""
    pg_ctl, options, root = _CLUSTERS[base]
    _run(_as_owner([*pg_ctl, "-m", "fast", "stop"]))
    _run(_as_owner([*pg_ctl, "-o", options, "-l", str(root / "log"), "start"]))


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"{args[-1]}: {done.stderr}"


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A running cluster; yields its URL without a database (see :func:`new_database`)."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    _run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]))
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-w"]
    _run(_as_owner([*pg_ctl, "-o", options, "-l", str(root / "log"), "start"]))
    try:
        _CLUSTERS[f"postgresql://postgres@127.0.0.1:{port}"] = (pg_ctl, options, root)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([*pg_ctl, "-m", "immediate", "stop"]), check=False, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def new_database(base: str, name: str) -> str:
    """An empty database ``name`` in the cluster at ``base``; its URL."""
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"

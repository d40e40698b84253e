"""Fixtures for the NBD tests: real peers (qemu-nbd, qemu-img, qemu-io, nbdinfo, nbdcopy).

A missing tool FAILS the tests (never skips them): install with
``apt-get install -y qemu-utils libnbd-bin``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import TOOLS


@pytest.fixture(scope="session", autouse=True)
def _peer_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y qemu-utils libnbd-bin")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private folder for unix sockets (tmp_path can exceed the 108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="srnbd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)

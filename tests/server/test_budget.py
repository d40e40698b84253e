"""The upload budget bounds what concurrent uploads hold in the server's memory (not timed).

The server runs in this process (uvicorn in a thread) so the test can read its counters:
the upload budget it reserved at once (``peak_in_flight``) and the request-body bytes it held
at once (``held.peak``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvicorn

from strongroom.server.app import Limits, Server, create_app
from strongroom.server.auth import new_token
from strongroom.server.catalog import Catalog
from strongroom.storage.http import HttpBackend, ServerAddress
from strongroom.storage.names import content_digest
from tests.server.conftest import free_port

MiB = 1024 * 1024
BUDGET = 16 * MiB
UPLOADS = 8
SIZE = 8 * MiB


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator[tuple[Server, HttpBackend]]:
    catalog = Catalog(tmp_path, create=True)
    made = new_token("backup")
    catalog.add_token(made.row)
    catalog.add_vault("v", str(tmp_path / "vaults" / "v"))
    catalog.close()
    server = Server(tmp_path, Limits(max_upload=SIZE, upload_budget=BUDGET))
    port = free_port()
    config = uvicorn.Config(create_app(server), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    client = HttpBackend(ServerAddress("http", "127.0.0.1", port, ""), "v", made.secret)
    try:
        yield server, client
    finally:
        client.close()
        uv.should_exit = True
        thread.join(timeout=30)
        server.close()


@pytest.mark.parametrize("kind", ["data", "index"])
def test_concurrent_uploads_stay_within_the_budget(
    inproc: tuple[Server, HttpBackend], kind: str
) -> None:
    """Packs are streamed to the local backend (a batch each in memory); index objects are
    held whole.  Either way, 8 concurrent 8 MiB uploads never hold more than 16 MiB."""
    server, client = inproc
    blobs = [os.urandom(SIZE) for _ in range(UPLOADS)]

    def name(blob: bytes) -> str:
        digest = content_digest(blob).hex()
        return f"data/{digest[:2]}/{digest}" if kind == "data" else f"index/{digest}"

    with ThreadPoolExecutor(UPLOADS) as pool:
        list(pool.map(lambda b: client.put(name(b), b), blobs))
    assert all(client.get(name(b)) == b for b in blobs)
    assert 0 < server.peak_in_flight <= BUDGET
    assert 0 < server.held.peak <= BUDGET
    assert server.held.now == 0
    # uploads did run side by side (the budget, not a queue of one, bounded them)
    assert server.peak_in_flight > SIZE if kind == "index" else server.peak_in_flight > 4 * MiB

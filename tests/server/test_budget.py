"""The upload budget bounds what concurrent uploads hold in the server's memory (not timed).

The server runs in this process so the test can read its counters: the upload budget it
reserved at once (``peak_in_flight``) and the request-body bytes it held at once
(``held.peak``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from strongroom.storage.names import content_digest
from tests.server.conftest import in_process

MiB = 1024 * 1024
BUDGET = 16 * MiB
UPLOADS = 8
SIZE = 8 * MiB


@pytest.mark.parametrize("kind", ["data", "index"])
def test_concurrent_uploads_stay_within_the_budget(tmp_path: Path, kind: str) -> None:
    """Packs are streamed to the local backend (a batch each in memory); index objects are
    held whole.  Either way, 8 concurrent 8 MiB uploads never hold more than 16 MiB."""
    blobs = [os.urandom(SIZE) for _ in range(UPLOADS)]

    def name(blob: bytes) -> str:
        digest = content_digest(blob).hex()
        return f"data/{digest[:2]}/{digest}" if kind == "data" else f"index/{digest}"

    with in_process(tmp_path, max_upload=SIZE, upload_budget=BUDGET) as served:
        client = served.backend("backup")
        with ThreadPoolExecutor(UPLOADS) as pool:
            list(pool.map(lambda b: client.put(name(b), b), blobs))
        assert all(client.get(name(b)) == b for b in blobs)
        client.close()
        server = served.server
        assert 0 < server.peak_in_flight <= BUDGET
        assert 0 < server.held.peak <= BUDGET
        assert server.held.now == 0
        # uploads did run side by side: the budget bounded them, not a queue of one
        assert server.peak_in_flight > (SIZE if kind == "index" else 4 * MiB)

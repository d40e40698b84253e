"""Every backend reports when an object was written (prune's grace period relies on it)."""

from __future__ import annotations

import time

from strongroom.storage import Backend, ObjectInfo


def test_list_and_stat_report_a_recent_mtime(backend: Backend) -> None:
    before = time.time()
    backend.put("data/ab/mtime", b"x" * 10)
    listed = {info.name: info for info in backend.list("data/")}
    stat = backend.stat("data/ab/mtime")
    for info in (listed["data/ab/mtime"], stat):
        assert info.mtime is not None
        # Stores keep whole seconds or milliseconds and their clock may differ a little.
        assert before - 5 <= info.mtime <= time.time() + 5
    assert stat == ObjectInfo("data/ab/mtime", 10)  # mtime does not take part in equality

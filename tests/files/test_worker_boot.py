"""A helper process loads with the cyclic collector off and works with it on, with the CLI's
thresholds and what it loaded frozen (``workerproc._BOOT`` and ``serve_main``)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from strongroom import collector
from strongroom.files.workerproc import WorkerProcess, close_all

_PROBE = textwrap.dedent(
    """
    import gc, sys

    ENABLED_ON_LOAD = gc.isenabled()

    from strongroom.files.workermain import serve_main


    def serve(conn):
        first = conn.recv()
        state = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
        conn.send(("state", first, ENABLED_ON_LOAD, *state))
        conn.recv()  # until the parent closes its end


    if __name__ == "__main__":
        sys.exit(serve_main(sys.argv, serve))
    """
)


def test_a_helper_loads_without_collections_and_works_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gc_probe_helper.py").write_text(_PROBE)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    helper = WorkerProcess("gc_probe_helper", "backup")
    try:
        helper.open(("hello",))
        kind, first, on_load, enabled, threshold, frozen = helper.recv()
    finally:
        close_all([helper])
    assert (kind, first) == ("state", ("hello",))
    assert not on_load  # no collection while the helper's modules load
    assert enabled and threshold == collector.THRESHOLD and frozen > 0
    assert helper.proc.returncode == 0

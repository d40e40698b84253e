"""The worker pool's bookkeeping (files/workerproc.py): a helper that goes quiet while it
owes answers is asked how far it got; a lost request fails the run instead of leaving it
waiting for ever, a slow helper does not."""

from __future__ import annotations

import time
from typing import Any

import pytest

from strongroom.errors import FilesError
from strongroom.files import workerproc
from strongroom.files.workerproc import WorkerPool


def _drain(pool: WorkerPool) -> list[Any]:
    got: list[Any] = []
    while pool.busy:
        got += [msg[1] for msg in pool.answers(None)]
    return got


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(workerproc, "_SILENCE", 0.3)
    pool = WorkerPool("tests.files.lossy_worker", [("open",)], "restore")
    yield pool
    pool.close(abandon=True)


def test_a_lost_request_fails_the_run(pool: WorkerPool) -> None:
    for job in ("one", "lose", "three"):
        pool.submit(("job", job))
    with pytest.raises(FilesError, match=r"out of step: 2 answers to 3 requests \(3 handled\)"):
        _drain(pool)


def test_a_slow_helper_is_only_asked(pool: WorkerPool) -> None:
    for job in ("slow", "two", "slow", "four"):
        pool.submit(("job", job))
    assert _drain(pool) == ["slow", "two", "slow", "four"]


def test_a_helper_whose_ready_went_missing_is_put_to_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workerproc, "_SILENCE", 0.3)
    pool = WorkerPool("tests.files.lossy_worker", [("open", "no ready")], "restore")
    try:
        pool.submit(("job", "one"))
        assert _drain(pool) == ["one"]
    finally:
        pool.close(abandon=True)


def test_one_look_takes_every_answer_already_there(pool: WorkerPool) -> None:
    """Answers that came meanwhile are all taken by one look, not one per look: a restore by
    subtrees had left its worker without folders while the parent read its answers one per
    job it wrote (docs/benchmarks.md, "Session 28")."""
    deadline = time.monotonic() + 60
    while not pool.ready and time.monotonic() < deadline:
        assert pool.answers(0.1) == []
    pool.queued = 8
    for n in range(6):
        pool.submit(("job", str(n)))
    time.sleep(1.0)  # the helper answers at once: all six are in the socket by now
    assert [msg[1] for msg in pool.answers(0)] == [str(n) for n in range(6)]
    assert not pool.busy

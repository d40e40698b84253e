"""RetryingBackend: what is retried, how long it waits, and what it says when it gives up."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from strongroom.errors import ObjectNotFound, PermanentStorageError, TransientStorageError
from strongroom.storage import MemoryBackend, RetryingBackend
from tests.faults import FaultRule, FaultyBackend


def setup(
    *rules: FaultRule, attempts: int = 5
) -> tuple[RetryingBackend, FaultyBackend, list[float]]:
    inner = MemoryBackend()
    inner.put("data/a", b"content")
    faulty = FaultyBackend(inner, rules)
    sleeps: list[float] = []
    retrying = RetryingBackend(
        faulty, attempts=attempts, base_delay=0.05, max_delay=0.3, sleep=sleeps.append, seed=1
    )
    return retrying, faulty, sleeps


def test_transient_errors_are_retried_until_success() -> None:
    retrying, faulty, sleeps = setup(FaultRule(op="get", kind="transient", times=3))
    assert retrying.get("data/a") == b"content"
    assert faulty.calls["get"] == 4
    assert len(sleeps) == 3
    assert retrying.retries == 3


@pytest.mark.parametrize("op", ["get", "get_range", "put", "delete", "stat", "list"])
def test_every_operation_is_retried(op: str) -> None:
    retrying, faulty, _ = setup(FaultRule(op="*", kind="transient", times=2))
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: retrying.get("data/a"),
        "get_range": lambda: retrying.get_range("data/a", 1, 2),
        "put": lambda: retrying.put("data/b", b"b"),
        "delete": lambda: retrying.delete("data/a"),
        "stat": lambda: retrying.stat("data/a"),
        "list": lambda: list(retrying.list("data/")),
    }
    calls[op]()
    assert faulty.calls[op] == 3


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    retrying, _, sleeps = setup(FaultRule(op="get", kind="transient", times=6), attempts=7)
    retrying.get("data/a")
    ceilings = [0.05, 0.1, 0.2, 0.3, 0.3, 0.3]
    assert len(sleeps) == len(ceilings)
    for slept, ceiling in zip(sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_permanent_errors_are_not_retried() -> None:
    retrying, faulty, sleeps = setup(FaultRule(op="put", kind="permanent"))
    with pytest.raises(PermanentStorageError):
        retrying.put("data/b", b"b")
    assert faulty.calls["put"] == 1
    assert sleeps == []


def test_not_found_is_not_retried() -> None:
    retrying, faulty, sleeps = setup()
    with pytest.raises(ObjectNotFound):
        retrying.get("data/missing")
    assert faulty.calls["get"] == 1
    assert sleeps == []


def test_exhaustion_says_how_many_attempts() -> None:
    retrying, faulty, sleeps = setup(FaultRule(op="get", kind="transient"), attempts=4)
    with pytest.raises(TransientStorageError, match="after 4 attempts") as info:
        retrying.get("data/a")
    assert info.value.name == "data/a"
    assert "injected transient fault" in str(info.value)
    assert isinstance(info.value.__cause__, TransientStorageError)
    assert faulty.calls["get"] == 4
    assert len(sleeps) == 3


def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryingBackend(MemoryBackend(), attempts=0)

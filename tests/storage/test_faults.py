"""FaultyBackend: each fault kind, the rule controls and the counters."""

from __future__ import annotations

import pytest

from strongroom.errors import ObjectNotFound, PermanentStorageError, TransientStorageError
from strongroom.storage import MemoryBackend
from tests.faults import FaultRule, FaultyBackend

DATA = bytes(range(256)) * 4


@pytest.fixture
def faulty() -> FaultyBackend:
    inner = MemoryBackend()
    inner.put("data/a", DATA)
    inner.put("index/i", DATA)
    return FaultyBackend(inner, seed=3)


def test_passes_through_without_rules(faulty: FaultyBackend) -> None:
    assert faulty.get("data/a") == DATA
    faulty.put("data/b", b"b")
    assert faulty.inner.get("data/b") == b"b"
    assert faulty.calls == {"get": 1, "put": 1}
    assert not faulty.injected


def test_transient_first_n_calls(faulty: FaultyBackend) -> None:
    rule = faulty.add_rule(FaultRule(op="get", kind="transient", times=2))
    for _ in range(2):
        with pytest.raises(TransientStorageError, match="injected transient fault on get data/a"):
            faulty.get("data/a")
    assert faulty.get("data/a") == DATA
    assert rule.fired == 2
    assert rule.matched == 3
    assert faulty.injected == {"transient": 2}


def test_after_skips_first_calls(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="stat", kind="permanent", after=1, times=1))
    assert faulty.stat("data/a").size == len(DATA)
    with pytest.raises(PermanentStorageError):
        faulty.stat("data/a")
    assert faulty.stat("data/a").size == len(DATA)


def test_prefix_limits_the_rule(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="*", kind="permanent", prefix="index/"))
    assert faulty.get("data/a") == DATA
    with pytest.raises(PermanentStorageError):
        faulty.get("index/i")
    with pytest.raises(PermanentStorageError):
        faulty.put("index/j", b"j")
    with pytest.raises(PermanentStorageError):
        faulty.list("")  # a listing of everything covers index/
    assert [i.name for i in faulty.list("data/")] == ["data/a"]


def test_not_found(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="get_range", kind="not_found", times=1))
    with pytest.raises(ObjectNotFound):
        faulty.get_range("data/a", 0, 10)
    assert faulty.get_range("data/a", 0, 10) == DATA[:10]


def test_short_read(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="get", kind="short_read", times=1))
    short = faulty.get("data/a")
    assert len(short) < len(DATA)
    assert DATA.startswith(short)
    assert faulty.get("data/a") == DATA


def test_bitflip_flips_exactly_one_bit(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="get", kind="bitflip", prefix="data/", times=1))
    damaged = faulty.get("data/a")
    assert len(damaged) == len(DATA)
    diff = [a ^ b for a, b in zip(damaged, DATA, strict=True) if a != b]
    assert len(diff) == 1
    assert bin(diff[0]).count("1") == 1
    assert faulty.inner.get("data/a") == DATA  # stored bytes untouched
    assert faulty.events[0].kind == "bitflip"


def test_bitflip_on_ranges(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="*", kind="bitflip"))
    assert faulty.get_range("data/a", 10, 20) != DATA[10:30]
    faulty.put("data/b", b"x")  # read faults leave writes alone
    assert faulty.inner.get("data/b") == b"x"


def test_lost_write(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="put", kind="lost_write", times=1))
    faulty.put("data/lost", b"gone")
    faulty.put("data/kept", b"here")
    with pytest.raises(ObjectNotFound):
        faulty.get("data/lost")
    assert faulty.get("data/kept") == b"here"
    assert faulty.injected == {"lost_write": 1}


def test_seeded_randomness_is_repeatable() -> None:
    def run(seed: int) -> list[bool]:
        inner = MemoryBackend()
        inner.put("x", b"x")
        faulty = FaultyBackend(
            inner, [FaultRule(op="get", kind="transient", probability=0.5)], seed=seed
        )
        outcome = []
        for _ in range(40):
            try:
                faulty.get("x")
                outcome.append(True)
            except TransientStorageError:
                outcome.append(False)
        return outcome

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert 5 < run(1).count(False) < 35


def test_clear_and_reset(faulty: FaultyBackend) -> None:
    faulty.add_rule(FaultRule(op="get", kind="transient"))
    with pytest.raises(TransientStorageError):
        faulty.get("data/a")
    faulty.clear_rules()
    faulty.reset_counters()
    assert faulty.get("data/a") == DATA
    assert faulty.calls == {"get": 1}
    assert faulty.events == []


@pytest.mark.parametrize(
    ("op", "kind"), [("put", "bitflip"), ("list", "short_read"), ("get", "lost_write")]
)
def test_rules_reject_impossible_faults(op: str, kind: str) -> None:
    with pytest.raises(ValueError):
        FaultRule(op=op, kind=kind)  # type: ignore[arg-type]


def test_rules_reject_bad_probability() -> None:
    with pytest.raises(ValueError):
        FaultRule(op="get", kind="transient", probability=1.5)

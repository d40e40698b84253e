"""bench/ceiling.py: the machine's own 1 -> 2 core ceiling, its arithmetic, its sentence in the
report, its rounds kept through a merge, and a real (short) measurement."""

from __future__ import annotations

import pytest

from tests.bench._harness import bench_module

ceiling = bench_module("ceiling")


def test_twice_the_work_in_the_pairs_time() -> None:
    assert ceiling.CeilingRound(alone=1.0, pair=1.0).ceiling == 2.0
    assert ceiling.CeilingRound(alone=1.0, pair=1.25).ceiling == 1.6
    assert ceiling.CeilingRound(alone=1.0, pair=0.0).ceiling == 0.0


def test_the_summary_is_the_median_round_with_its_range() -> None:
    rounds = [ceiling.CeilingRound(1.0, p) for p in (1.0, 1.25, 1.6, 2.0)]
    got = ceiling.summarize(rounds)
    assert got["ceiling"] == 1.43  # between 1.6x and 1.25x, rounded
    assert (got["low"], got["high"]) == (1.0, 2.0)
    assert got["rounds"] == 4 and got["alone_s"] == 1.0
    assert ceiling.summarize([]) == {}


def test_the_report_says_the_ceiling_only_when_measured() -> None:
    text = ceiling.describe(ceiling.summarize([ceiling.CeilingRound(2.0, 2.5)] * 3))
    assert "1.60x from 1 core to 2" in text and "2.00 s alone" in text and "3 rounds" in text
    assert ceiling.describe({}) == ""


def test_a_merge_keeps_every_runs_rounds() -> None:
    merge = bench_module("merge")
    report = bench_module("report")
    settings = {"runs": 1, "size": "full", "cores": [1, 2], "tools": ["strongroom"]}
    docs = [
        report.to_json([], {"date": d}, {}, settings | {"ceiling_rounds": rounds})
        for d, rounds in (("a", [[1.0, 1.1]]), ("b", [[1.0, 1.2], [1.0, 1.3]]))
    ]
    merged = merge.merge_results(docs)
    assert merged["settings"]["ceiling_rounds"] == [[1.0, 1.1], [1.0, 1.2], [1.0, 1.3]]


def test_a_short_real_measurement() -> None:
    """Two CPUs here (the machines this runs on have two): the probe runs alone and in pairs
    (its times are too short here to say anything of the machine)."""
    rounds = ceiling.measure(rounds=1, loops=200_000)
    assert len(rounds) == 1
    assert rounds[0].alone > 0 and rounds[0].pair > 0
    assert rounds[0].ceiling == 2 * rounds[0].alone / rounds[0].pair


def test_a_probe_that_cannot_run_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="the ceiling probe failed on CPU 4095"):
        ceiling._timed(["4095"], 1000)  # no such CPU: taskset refuses

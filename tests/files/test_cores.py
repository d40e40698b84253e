"""files/cores.py: how many worker processes a backup or restore starts."""

from __future__ import annotations

import os

import pytest

from strongroom.files.cores import process_count


@pytest.mark.parametrize(
    ("cores", "spare", "want"),
    [(1, 0, 0), (1, 1, 0), (2, 0, 2), (2, 1, 1), (4, 1, 3), (16, 0, 8), (16, 1, 8), (3, 2, 1)],
)
def test_one_per_core_but_the_spare_ones(
    monkeypatch: pytest.MonkeyPatch, cores: int, spare: int, want: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert process_count(None, spare=spare) == want


def test_a_request_is_kept_within_bounds() -> None:
    assert process_count(3, spare=1) == 3
    assert process_count(0) == 0
    assert process_count(-2) == 0
    assert process_count(50) == 8

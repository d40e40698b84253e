"""bench/machine.py: /proc/stat deltas (steal, iowait, busy), load, --cores parsing."""

from __future__ import annotations

import os

import pytest
from bench.machine import (
    CpuTimes,
    MachineState,
    busy_cores,
    cpu_list,
    machine_cpus,
    median_state,
    parse_cores,
    parse_cpu_line,
    read_cpu_times,
    state_between,
)

STAT = """cpu  100 5 50 800 20 3 2 20 0 0
cpu0 50 2 25 400 10 1 1 10 0 0
intr 12345
"""


def test_parse_aggregate_line_not_per_cpu() -> None:
    t = parse_cpu_line(STAT)
    assert t == CpuTimes(100, 5, 50, 800, 20, 3, 2, 20)
    assert t.total == 1000


def test_old_kernel_without_steal_reads_zero() -> None:
    assert parse_cpu_line("cpu 1 2 3 4 5\n").steal == 0


def test_no_cpu_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        parse_cpu_line("intr 1\n")


def test_steal_and_iowait_are_shares_of_the_delta() -> None:
    before = CpuTimes(100, 0, 50, 800, 20, 0, 0, 30)
    # 200 ticks pass: 50 user, 20 system, 80 idle, 30 iowait, 20 steal
    after = CpuTimes(150, 0, 70, 880, 50, 0, 0, 50)
    state = state_between(before, after, load1=3.5)
    # busy: user and system, 70 of the 200 ticks (neither idle, iowait nor steal)
    assert state == MachineState(load1=3.5, steal_pct=10.0, iowait_pct=15.0, busy_pct=35.0)
    assert busy_cores(state.busy_pct, cpus=4) == 1.4


def test_no_time_passed_gives_zero_not_a_division_error() -> None:
    t = CpuTimes(1, 2, 3, 4, 5, 6, 7, 8)
    assert state_between(t, t, 0.5) == MachineState(0.5, 0.0, 0.0)


def test_reads_this_machine() -> None:
    first = read_cpu_times()
    assert first.total > 0
    assert read_cpu_times().total >= first.total


def test_busy_cores_use_the_measured_machines_cpu_count() -> None:
    """A saved report printed on another machine still counts the measured one's CPUs."""
    assert machine_cpus({"nproc": "16"}) == 16
    assert machine_cpus({"nproc": "?"}) == (os.cpu_count() or 1)
    assert busy_cores(50.0, machine_cpus({"nproc": "16"})) == 8.0


def test_median_state_per_field() -> None:
    states = [MachineState(1, 0, 9, 50), MachineState(5, 2, 1, 10), MachineState(3, 40, 2, 90)]
    assert median_state(states) == MachineState(3, 2, 2, 50)


def test_cores_pinning_lists() -> None:
    assert cpu_list(1) == "0"
    assert cpu_list(2) == "0-1"
    assert parse_cores("1,2") == [1, 2]
    assert parse_cores(None) == []
    with pytest.raises(ValueError, match="between 1 and"):
        parse_cores(f"1,{(os.cpu_count() or 1) + 1}")
    with pytest.raises(ValueError, match="at least one core"):
        cpu_list(0)

"""bench/measure.py's peak memory of a command's processes: summed RSS counts a page shared by
two processes twice, summed PSS once."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench._harness import bench_module

MiB = 1 << 20

# 96 MiB touched, then a fork: parent and child share every page until either writes it.
SHARED = """
import os, time
block = bytearray(96 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
pid = os.fork()
time.sleep(1.0)
if pid:
    os.waitpid(pid, 0)
"""


@pytest.fixture(scope="module")
def measure() -> ModuleType:
    """bench/measure.py as the harness imports it (its folder on sys.path)."""
    return bench_module("measure")


def test_shared_pages_count_once_in_pss(measure: ModuleType, tmp_path: Path) -> None:
    argv = [sys.executable, "-c", SHARED]
    sample = measure.run_measured(argv, {}, tmp_path / "log")
    assert sample.max_rss >= 2 * 96 * MiB  # both processes' RSS hold the block
    assert 96 * MiB <= sample.max_pss <= 96 * MiB + 40 * MiB  # PSS holds it once
    assert sample.max_pss < sample.max_rss - 80 * MiB


def test_pss_of_a_gone_process_is_zero(measure: ModuleType) -> None:
    assert measure.pss_of(2**22 + 12345) == 0
    assert measure.pss_of(0) == 0


def test_median_sample_keeps_pss(measure: ModuleType) -> None:
    samples = [measure.Sample(1.0, 1.0, 10 * MiB, max_pss=p * MiB) for p in (3, 9, 5)]
    assert measure.median_sample(samples).max_pss == 5 * MiB


def test_a_stopped_harness_stops_the_tool(measure: ModuleType, tmp_path: Path) -> None:
    """SIGTERM to the harness (its handler raises SystemExit) kills the measured command,
    which runs in its own session, instead of leaving it behind."""
    pidfile = tmp_path / "pid"
    argv = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)",
    ]

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(143)

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    started = time.monotonic()
    try:
        with pytest.raises(SystemExit):
            measure.run_measured(argv, {}, tmp_path / "log")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 30
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for whoever inherited it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False

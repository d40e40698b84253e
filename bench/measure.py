"""Running one command and measuring it: wall time, CPU time and peak memory of the child.

Each command runs under :mod:`spawn` (a small Python parent, so the child's peak RSS is its
own and not the harness's, see there), which times it with ``time.perf_counter`` from spawn to
reap and reports its ``rusage`` from ``os.wait4``: CPU time (user + system) and peak RSS.
Before each timed run the caller syncs (no writeback of earlier steps inside the timing) and
warms the page cache with :func:`warm`, since this machine drops the cache when idle.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from machine import load_average, read_cpu_times, state_between

MiB = 1 << 20
_SPAWN = Path(__file__).with_name("spawn.py")
_WARM_BUFFER = 8 * MiB
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PF_KTHREAD = 0x00200000


class CommandFailed(RuntimeError):
    """A measured command exited with a non-zero status (the log holds its output)."""


@dataclass(frozen=True)
class Sample:
    """One measured run of one command."""

    wall: float  # seconds
    cpu: float  # seconds, user + system of the child
    max_rss: int  # bytes
    max_pss: int = 0  # bytes, the peak of the summed PSS (0: not sampled; see _TreeMemory)
    foreign_cpu: float = 0.0  # CPU seconds other user-space processes used meanwhile
    sys_cpu: float = 0.0  # the system (kernel) part of ``cpu``
    load1: float = 0.0  # 1-minute load average when the command started
    steal_pct: float = 0.0  # steal time during the command, % of all CPU time (/proc/stat)
    iowait_pct: float = 0.0  # iowait during the command, likewise
    busy_pct: float = 0.0  # CPU time at work during it, anyone's (machine.MachineState)

    @property
    def cores(self) -> float:
        """Cores used: CPU seconds per wall second."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def run_measured(
    argv: Sequence[str],
    env: dict[str, str],
    log: Path,
    *,
    cwd: Path | None = None,
    stdout: Path | None = None,
    timeout: float = 3600.0,
) -> Sample:
    """Run ``argv`` to completion with its output appended to ``log``; raise if it fails.

    With ``stdout`` the standard output goes to that file instead (for JSON summaries).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out, (stdout or Path(os.devnull)).open("wb") as json_out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        others = other_processes()
        load1, stat_before = load_average(), read_cpu_times()
        report_r, report_w = os.pipe()
        with os.fdopen(report_r, "rb") as report_in:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-S", str(_SPAWN), str(report_w), *argv],
                    env=env,
                    cwd=cwd,
                    stdout=json_out if stdout else out,
                    stderr=out,
                    start_new_session=True,
                    pass_fds=(report_w,),
                )
            finally:
                os.close(report_w)
            timer = threading.Timer(timeout, _kill_group, (proc.pid,))
            timer.start()
            tree = _TreeMemory(proc.pid)
            try:
                proc.wait()
            except BaseException:  # the harness is stopped: so is the tool (its own session)
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                timer.cancel()
                tree.stop()
            report = report_in.read().split()
        state = state_between(stat_before, read_cpu_times(), load1)
        foreign = foreign_seconds(others, other_processes())
    if proc.returncode != 0 or len(report) != 4:
        raise CommandFailed(f"{argv[0]} exited with {proc.returncode} (see {log})")
    wall, user, system = (float(x) for x in report[:3])
    cpu = user + system
    # wait4 gives the largest single process; a tool with worker processes uses the sum
    rss = max(int(report[3]) * 1024, tree.peak_rss)
    return Sample(
        wall,
        cpu,
        rss,
        max_pss=tree.peak_pss,
        foreign_cpu=foreign,
        sys_cpu=system,
        load1=state.load1,
        steal_pct=state.steal_pct,
        iowait_pct=state.iowait_pct,
        busy_pct=state.busy_pct,
    )


class _TreeMemory:
    """The peaks of the summed RSS and PSS of every process in a session (a tool that works
    in several processes holds all of their memory at once).

    RSS, sampled every 50 ms from ``/proc/PID/stat``, counts a page each time a process maps
    it: the same interpreter, ``libcrypto`` and numpy pages in each of strongroom's worker
    processes.  PSS (``/proc/PID/smaps_rollup``, every 4th sample: it walks the page tables)
    splits a shared page among the processes that map it, so its sum is the memory the tool
    holds.  restic is one process, whose PSS is its RSS."""

    _PSS_EVERY = 4

    def __init__(self, sid: int) -> None:
        self.sid, self.peak_rss, self.peak_pss = sid, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        while not self._done.wait(0.05):
            pids = session_pids(self.sid)
            self.peak_rss = max(self.peak_rss, sum(map(_rss, pids)))
            if tick % self._PSS_EVERY == 0:
                self.peak_pss = max(self.peak_pss, sum(map(pss_of, pids)))
            tick += 1

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` but its leader (the harness's spawn.py)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == sid:
            continue
        with contextlib.suppress(OSError):
            if os.getsid(int(name)) == sid:
                pids.append(int(name))
    return pids


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0  # gone meanwhile
    return int(fields[21]) * _PAGE  # field 24: resident pages


def pss_of(pid: int) -> int:
    """A process's proportional set size in bytes (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_PAGE = os.sysconf("SC_PAGE_SIZE")


def run_quiet(
    argv: Sequence[str], env: dict[str, str] | None, log: Path, cwd: Path | None = None
) -> None:
    """An untimed helper command (init, cmp, diff); raise if it fails."""
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        result = subprocess.run(list(argv), env=env, cwd=cwd, stdout=out, stderr=out, check=False)
    if result.returncode != 0:
        raise CommandFailed(f"{' '.join(argv[:3])} exited with {result.returncode} (see {log})")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Median of each measure separately."""
    return Sample(
        wall=statistics.median(s.wall for s in samples),
        cpu=statistics.median(s.cpu for s in samples),
        max_rss=int(statistics.median(s.max_rss for s in samples)),
        max_pss=int(statistics.median(s.max_pss for s in samples)),
        foreign_cpu=statistics.median(s.foreign_cpu for s in samples),
        sys_cpu=statistics.median(s.sys_cpu for s in samples),
        load1=statistics.median(s.load1 for s in samples),
        steal_pct=statistics.median(s.steal_pct for s in samples),
        iowait_pct=statistics.median(s.iowait_pct for s in samples),
        busy_pct=statistics.median(s.busy_pct for s in samples),
    )


# (ticks since boot, {pid: (start time in ticks since boot, CPU ticks incl. reaped children)})
ProcessTimes = tuple[int, dict[int, tuple[int, int]]]


def other_processes() -> ProcessTimes:
    """CPU ticks of every user-space process but this one, from ``/proc/PID/stat``.

    A process's reaped children are counted in it (cutime, cstime), so short-lived commands
    of a long-running job are seen; kernel threads (writeback of what the measured tool wrote,
    for instance) are not counted.
    """
    me = os.getpid()
    with open("/proc/uptime") as f:
        now = int(float(f.read().split()[0]) * _CLOCK_TICKS)
    times: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()  # fields[0] is stat field 3 (state)
        if int(fields[6]) & _PF_KTHREAD:
            continue
        times[int(entry.name)] = (int(fields[19]), sum(int(x) for x in fields[11:15]))
    return now, times


def foreign_seconds(before: ProcessTimes, after: ProcessTimes) -> float:
    """CPU seconds other processes used between two snapshots (new processes from zero).

    A process that started before the first snapshot but is missing from it (unreadable
    then) is left out rather than counted with its whole lifetime.
    """
    since, earlier = before
    ticks = 0
    for pid, (start, used) in after[1].items():
        prev = earlier.get(pid)
        if prev is not None and prev[0] == start:
            ticks += used - prev[1]
        elif start >= since:
            ticks += used
    return ticks / _CLOCK_TICKS


def compact_memory() -> None:
    """Have the kernel compact free memory (root only; elsewhere nothing happens).

    On this machine (kernel 6.18, ext4 with large folios) writing 1.1 GB into a new file took
    8-10 s, 7 s of it system time in direct compaction, whenever free memory was fragmented,
    and 0.3 s right after a compaction or after another big file was deleted: whichever tool
    wrote first paid for the memory the next one got for free (a 2 GiB image restore measured
    1.45x restic with strongroom first; docs/benchmarks.md).  Compacting before every timed
    command gives each the same start.
    """
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/compact_memory").write_text("1")


def wait_for_quiet(max_wait: float, busy_cores: float = 0.2, window: float = 0.5) -> float:
    """Wait until the machine is idle (below ``busy_cores`` for two windows in a row).

    The development machine is shared: other jobs' CPU use inside a timing distorts it.
    Gives up after ``max_wait`` seconds; returns the seconds waited.
    """
    started = time.perf_counter()
    quiet = 0
    while quiet < 2 and time.perf_counter() - started < max_wait:
        before = other_processes()
        time.sleep(window)
        busy = foreign_seconds(before, other_processes())
        quiet = quiet + 1 if busy < busy_cores * window else 0
    return time.perf_counter() - started


def sync_filesystem(path: Path) -> None:
    """``syncfs`` on the file system holding ``path`` (``sync -f``)."""
    subprocess.run(["sync", "-f", str(path)], check=True)


def warm(paths: Iterable[Path]) -> int:
    """Read every regular file under ``paths`` into the page cache; returns bytes read.

    Sparse files are read extent by extent (SEEK_DATA/SEEK_HOLE), so a 64 GiB image with
    1 GiB of data costs 1 GiB of reading.
    """
    buffer = bytearray(_WARM_BUFFER)
    total = 0
    for path in paths:
        if path.is_dir():
            for root, _dirs, files in os.walk(path):
                for name in files:
                    total += _warm_file(Path(root, name), buffer)
        elif path.is_file():
            total += _warm_file(path, buffer)
    return total


def evict(paths: Iterable[Path]) -> None:
    """Drop these files (folders: every file below) from the page cache (FADV_DONTNEED)."""
    for path in paths:
        files = [path] if path.is_file() else [Path(r, n) for r, _, ns in os.walk(path) for n in ns]
        for file in files:
            try:
                fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _warm_file(path: Path, buffer: bytearray) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return 0
    try:
        return sum(_read_range(fd, start, end, buffer) for start, end in data_extents(fd))
    finally:
        os.close(fd)


def data_extents(fd: int) -> list[tuple[int, int]]:
    """The file's data extents as ``(start, end)`` pairs, holes left out."""
    size = os.fstat(fd).st_size
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, end))
        offset = end
    return extents


def _read_range(fd: int, start: int, end: int, buffer: bytearray) -> int:
    view = memoryview(buffer)
    done = 0
    while start + done < end:
        want = min(len(buffer), end - start - done)
        got = os.preadv(fd, [view[:want]], start + done)
        if got <= 0:
            break
        done += got
    return done

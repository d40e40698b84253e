"""The control plane's list endpoints with a large history (issue 16's benchmark).

    python bench/control.py [--items 500] [--jobs 10000] [--requests 40] [--workdir DIR]

A catalog is filled directly (``--items`` protected items on 50 machines, ``--jobs`` finished
jobs with two log lines each, an alert raised on every tenth item), then a real ``strongroom
server run`` answers ``GET /v1/items``, ``/v1/jobs`` (the default page of 100 and with
``?item=``), ``/v1/alerts`` and ``/metrics`` over one keep-alive connection on loopback,
``--requests`` times each after two warm-up requests.  Prints p50/p95 in milliseconds; the
issue's target is under 200 ms.  A measurement on one machine, not a timed test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
EXE = [sys.executable, "-m", "strongroom.cli.main"]
T0 = 1_750_000_000.0
TARGET_MS = 200.0


def fill(data: Path, items: int, jobs: int) -> None:
    from strongroom.server.auth import new_token
    from strongroom.server.catalog import Catalog

    catalog = Catalog(data)
    catalog.add_vault("main", str(data / "vaults" / "main"))
    (data / "vaults" / "main").mkdir(parents=True, exist_ok=True)
    machines = [f"m{i:02d}" for i in range(50)]
    tokens = {}
    for m in machines:
        made = new_token("backup", sources=[f"agent:{m}"])
        catalog.add_token(made.row)
        tokens[m] = made.row.id
    names = [f"item{i:04d}" for i in range(items)]
    rnd = random.Random(16)
    with catalog.tx() as db:
        db.executemany(
            "INSERT INTO machines (name, token, created) VALUES (?, ?, ?)",
            [(m, tokens[m], T0) for m in machines],
        )
        db.execute(
            "INSERT INTO policies VALUES (?, ?, ?, NULL, NULL, 2, 10, 'auto', 60,"
            " 7, 0, 14, 8, 12, 0, ?)",
            ("nightly", "main", "*-*-* 00/4:00", T0),
        )
        db.executemany(
            "INSERT INTO items (name, kind, machine, targets, excludes, policy, source, created,"
            " next_run, last_success) VALUES (?, 'files', ?, '[\"/srv\"]', '[]', 'nightly', ?,"
            " ?, ?, ?)",
            [(n, machines[i % 50], n, T0, T0 + 86400, T0) for i, n in enumerate(names)],
        )
        rows = []
        for j in range(jobs):
            item = names[j % items]
            start = T0 - (jobs - j) * 60.0
            state = "failed" if rnd.random() < 0.05 else "succeeded"
            size = rnd.randint(0, 1 << 30)
            rows.append((j + 1, item, start, state, start, start, start + 30, size))
        db.executemany(
            "INSERT INTO jobs (id, item, kind, scheduled, state, attempt, created, started,"
            " finished, bytes_read, payload) VALUES (?, ?, 'backup', ?, ?, 1, ?, ?, ?, ?, '{}')",
            rows,
        )
        db.executemany(
            "INSERT INTO job_log (job, time, line) VALUES (?, ?, ?)",
            [(r[0], r[2], line) for r in rows for line in ("started on m00", "files: 1 new")],
        )
        db.executemany(
            "INSERT INTO alert_state (item, condition, since, detail) VALUES (?, 'failed', ?, ?)",
            [(n, T0, "the bench's failure") for n in names[::10]],
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ms(pid: int) -> float:
    """The process's user and system CPU time so far (ms): a cost the machine's load inflates
    less than wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def measure(port: int, token: str, path: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for n in range(count + 2):
        started = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        reply = conn.getresponse()
        body = reply.read()
        if reply.status != 200:
            raise SystemExit(f"{path}: HTTP {reply.status}: {body[:200]!r}")
        if n >= 2:
            times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-control-", dir=args.workdir))
    data = work / "data"
    made = subprocess.run(
        [*EXE, "server", "init", "--data", str(data), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = json.loads(made.stdout)["token"]
    fill(data, args.items, args.jobs)
    port = free_port()
    server = subprocess.Popen(
        [*EXE, "server", "run", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        print(f"{args.items} items, {args.jobs} jobs; {args.requests} requests each (ms)")
        worst = 0.0
        for path in ("/v1/items", "/v1/jobs", "/v1/jobs?item=item0042", "/v1/alerts", "/metrics"):
            cpu = cpu_ms(server.pid)
            t = sorted(measure(port, token, path, args.requests))
            cpu = (cpu_ms(server.pid) - cpu) / (args.requests + 2)
            p50, p95 = statistics.median(t), t[int(len(t) * 0.95) - 1]
            worst = max(worst, p95)
            print(f"  {path:<26} p50 {p50:7.1f}  p95 {p95:7.1f}  server CPU/request {cpu:6.1f}")
        load = os.getloadavg()[0]
        print(f"worst p95 {worst:.1f} ms: {'under' if worst < TARGET_MS else 'OVER'} 200 ms")
        print(f"(load average {load:.1f} on {os.cpu_count()} CPUs during the run)")
        return 0 if worst < TARGET_MS else 1
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

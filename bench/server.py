"""The ``server`` scenario: backups and restores through ``strongroom server`` on loopback.

    python bench/server.py [--quick] [--runs 3] [--clients 20] [--client-mib 64]
                           [--sets tree,image] [--workdir DIR] [--upload-budget MiB]

1. The bench tree and the bench image (``datasets.py``), each backed up and restored straight
   into a local vault and through a server on 127.0.0.1 into a local vault (the server's),
   alternating, ``--runs`` times with fresh vaults: the medians and their ratio (server/local).
   The issue's target: at most 1.3x for backup and for restore.  Beside wall seconds: CPU
   seconds (the client's, plus the server process's during the command) and cores used
   (CPU / wall), and the ratio of CPU seconds, which a busy machine disturbs less.
2. ``--clients`` clients backing up at once (each its own generated image, so nothing
   deduplicates between them) into one vault of one server: all must succeed; the throughput
   and the server process's peak RSS (``VmHWM``), which the server's ``--upload-budget`` bounds.

Ratios in one run on one machine, not timed tests.  Results go to WORKDIR/results/server-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from datasets import FULL, QUICK, ImageDataset, MiB, TreeDataset

PASSWORD = "bench-passphrase"
KDF = ("--kdf-memory", "64", "--kdf-time", "1")  # the same for both: a constant per command
ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "strongroom.cli.main"]


def env_with(**extra: str) -> dict[str, str]:
    env = {**os.environ, "STRONGROOM_PASSWORD": PASSWORD, **extra}
    env["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"
    for name in ("STRONGROOM_VAULT", "STRONGROOM_TOKEN", "STRONGROOM_TOKEN_FILE"):
        env.pop(name, None)
    return env | extra


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*EXE, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"strongroom {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def child_cpu() -> float:
    """CPU seconds (user + system) of the children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(env: dict[str, str], *args: str, server: int | None = None) -> Timing:
    """Wall time of one command, its CPU time, and the server's CPU time meanwhile."""
    cpu0, srv0 = child_cpu(), proc_cpu(server) if server else 0.0
    start = time.perf_counter()
    cli(env, *args)
    wall = time.perf_counter() - start
    srv = proc_cpu(server) - srv0 if server else 0.0
    return Timing(wall, child_cpu() - cpu0, srv)


@dataclass(frozen=True)
class Timing:
    wall: float
    client_cpu: float
    server_cpu: float


class Served:
    """``strongroom server run`` on a free loopback port, with an admin token."""

    def __init__(self, data: Path, budget_mib: int) -> None:
        shutil.rmtree(data, ignore_errors=True)
        self.env = env_with(XDG_CACHE_HOME=str(data / "cache"))
        self.admin = json.loads(cli(self.env, "server", "init", "--data", str(data), "--json"))[
            "token"
        ]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [*EXE, "server", "run", "--data", str(data), "--listen", f"127.0.0.1:{port}",
             "--upload-budget", str(budget_mib)],
            env=self.env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.05)

    def as_admin(self, cache: Path) -> dict[str, str]:
        return self.env | {"STRONGROOM_TOKEN": self.admin, "XDG_CACHE_HOME": str(cache)}

    def token(self, role: str) -> str:
        out = cli(self.as_admin(Path("/tmp")), "token", "create", "--role", role,
                  "--server", self.url, "--json")  # fmt: skip
        token: str = json.loads(out)["token"]
        return token

    def peak_rss(self) -> int:
        """The server process's peak resident set (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def backup_args(kind: str, path: Path, source: str) -> list[str]:
    return ["backup", "disk" if kind == "image" else "files", str(path), "--source", source]


def restore_args(kind: str, source: str, out: Path) -> list[str]:
    if kind == "image":
        return ["restore", "disk", "latest", "--source", source, "--to", str(out / "disk.raw")]
    return ["restore", "files", "latest", "--source", source, "--target", str(out)]


def settle_deletes() -> None:
    """Wait out ext4's "recently deleted" window (see ``harness.settle_deletes``): creating
    inodes right after deleting a 20,000-file tree costs the next restore 2-5x its kernel time,
    which made whichever side ran second look slower."""
    subprocess.run(["sync"], check=True)
    time.sleep(int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100 + 5)


def one_round(
    work: Path, kind: str, path: Path, served: Served, server_first: bool
) -> dict[str, float]:
    """Backup and restore of ``path`` into a local vault and through the server, in the given
    order (alternated between rounds); every deletion happens before the round, then waited
    out, so neither side pays for the other's deleted files."""
    times: dict[str, float] = {}
    order = ("server", "local") if server_first else ("local", "server")
    for where in order:
        for d in (work / f"cache-{where}", work / f"restore-{where}"):
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(work / "vault-local", ignore_errors=True)
    settle_deletes()
    plan: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}
    for where in order:
        cache = work / f"cache-{where}"
        if where == "local":
            env = env_with(XDG_CACHE_HOME=str(cache))
            vault = str(work / "vault-local")
            cli(env, "init", "--vault", vault, *KDF)
            plan[where] = (vault, env, env)
        else:
            vault = f"{served.url}/{kind}-{time.monotonic_ns()}"
            cli(served.as_admin(cache), "init", "--vault", vault, *KDF)
            env_b = env_with(XDG_CACHE_HOME=str(cache), STRONGROOM_TOKEN=served.token("backup"))
            env_r = env_with(XDG_CACHE_HOME=str(cache), STRONGROOM_TOKEN=served.token("restore"))
            plan[where] = (vault, env_b, env_r)
    for where in order:
        vault, env_b, _ = plan[where]
        pid = served.proc.pid if where == "server" else None
        subprocess.run(["sync"], check=True)
        backup = backup_args(kind, path, kind)
        record(times, f"{where} backup", timed(env_b, *backup, "--vault", vault, server=pid))
    for where in order:
        vault, _, env_r = plan[where]
        pid = served.proc.pid if where == "server" else None
        out = work / f"restore-{where}"
        out.mkdir(parents=True)
        subprocess.run(["sync"], check=True)
        restore = restore_args(kind, kind, out)
        record(times, f"{where} restore", timed(env_r, *restore, "--vault", vault, server=pid))
    return times


def record(times: dict[str, float], what: str, t: Timing) -> None:
    """Wall seconds, CPU seconds (client and server together) and cores used (CPU / wall)."""
    times[what] = t.wall
    times[f"{what} cpu"] = t.client_cpu + t.server_cpu
    if t.server_cpu:
        times[f"{what} server cpu"] = t.server_cpu
    times[f"{what} cores"] = (t.client_cpu + t.server_cpu) / t.wall


def many_clients(work: Path, served: Served, clients: int, size: int) -> dict[str, object]:
    images = [ImageDataset(work / "clients", 1000 + i, size) for i in range(clients)]
    for image in images:
        image.ensure()
    vault = f"{served.url}/many"
    cli(served.as_admin(work / "cache-admin"), "init", "--vault", vault, *KDF)
    token = served.token("backup")
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*EXE, *backup_args("image", image.path, f"client{i}"), "--vault", vault],
            env=env_with(XDG_CACHE_HOME=str(work / f"cache-c{i}"), STRONGROOM_TOKEN=token),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, image in enumerate(images)
    ]
    failed = [p.stderr.read().decode() for p in procs if p.wait() != 0 and p.stderr]
    seconds = time.perf_counter() - start
    total = sum(image.size for image in images)
    return {
        "clients": clients,
        "failed": len(failed),
        "first_failure": failed[0][:300] if failed else "",
        "seconds": round(seconds, 2),
        "bytes": total,
        "mib_per_s": round(total / MiB / seconds, 1),
        "server_peak_rss_mib": round(served.peak_rss() / MiB, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data sets")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--clients", type=int, default=20, help="0: skip the many-clients part")
    ap.add_argument("--sets", default="tree,image", help="data sets to time (tree, image)")
    ap.add_argument("--client-mib", type=int, default=64, help="each client's image (MiB)")
    ap.add_argument("--upload-budget", type=int, default=256, help="the server's, in MiB")
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-bench"))
    args = ap.parse_args()
    sizes = QUICK if args.quick else FULL
    data = args.workdir / "data"
    tree, image = TreeDataset(data, 1, sizes.files), ImageDataset(data, 2, sizes.image)
    for ds in (tree, image):
        ds.ensure()
    work = args.workdir / "server"
    served = Served(work / "srv", args.upload_budget)
    result: dict[str, object] = {"quick": args.quick, "runs": args.runs}
    try:
        sets = [(k, ds) for k, ds in (("tree", tree), ("image", image)) if k in args.sets]
        for kind, ds in sets:
            rounds = [one_round(work, kind, ds.path, served, i % 2 == 1) for i in range(args.runs)]
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            for op in ("backup", "restore"):
                med[f"{op} ratio"] = med[f"server {op}"] / med[f"local {op}"]
                med[f"{op} cpu ratio"] = med[f"server {op} cpu"] / med[f"local {op} cpu"]
            result[kind] = {k: round(v, 3) for k, v in med.items()}
            print(kind, ds.describe(), json.dumps(result[kind]), flush=True)
        if args.clients:
            served.stop()
            served = Served(work / "srv-many", args.upload_budget)  # its own peak RSS
            result["many"] = many_clients(work, served, args.clients, args.client_mib * MiB)
            print("many", json.dumps(result["many"]), flush=True)
    finally:
        served.stop()
    out = args.workdir / "results" / f"server-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()

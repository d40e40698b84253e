"""strongroom against virtnbdbackup on the same running libvirt domain (issue 19).

    python bench/libvirt_vs_virtnbdbackup.py [--disk-size 2G] [--runs 3] [--compress]
                                             [--workdir /var/tmp/strongroom-bench-vm]

The domain is the libvirt tests' tiny TCG guest (tests/libvirt/guest.py builds and caches it)
with one qcow2 data disk: 1 MiB runs of unallocated space, written zeros (allocated), random
bytes and real text from /usr/share, built once per size and cached.  Each tool and run gets
a fresh copy of that disk in a newly defined and started domain (virtnbdbackup refuses to run
when another tool's checkpoints exist), then, timed: a full backup; 1 % of the disk
overwritten in the guest (1 MiB writes at seeded offsets); an incremental backup; a restore of
it to a qcow2 image.  strongroom runs twice: with a passphrase (Argon2id in every command) and
with a key file (``strongroom-keyfile``: its slot needs no derivation), as a host's scheduled
backups would.  Per command: wall, CPU seconds of the tool (rusage, bench/spawn.py),
CPU seconds QEMU spent meanwhile (``/proc/PID/stat`` before and after: serving the NBD
reads), peak RSS, and the backup's size.  A restore lasts until its image is written out (no
helper holds its lock, then ``syncfs``).  A backup's wall time ends when the tool exits, as the
issue's targets measure it; beside it, the seconds until the backup's files are then written
to the disk (strongroom fsyncs its packs before it exits, virtnbdbackup leaves its files in the
page cache; see :func:`written_out`), and the ratio of the two sums ("on disk").  The restored
image is compared with the domain's disk (``qemu-img compare``, untimed).  Results:
WORKDIR/results/vm-*.md and .json.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.libvirt's guest

from info import header, machine_info
from measure import CommandFailed, Sample, run_measured, run_quiet, sync_filesystem
from scoring import Check, Numbers, vm_checks
from tools import Strongroom, Workspace

MiB = 1 << 20
# SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
_SYNC_RANGE_ALL = 1 | 2 | 4
TICKS = os.sysconf("SC_CLK_TCK")
TEXT_SUFFIXES = {
    *(".txt", ".html", ".xml", ".py", ".pm", ".pl", ".sh", ".h", ".c", ".css", ".js"),
    *(".md", ".rst", ".pod", ".json", ".tex", ".el", ".rb", ".po"),
}


@dataclass
class Result:
    op: str
    tool: str
    run: int
    sample: Sample
    qemu_cpu: float
    backup_size: int | None = None
    extra: dict[str, float | bool] = field(default_factory=dict)


def _text_of(path: Path) -> bytes:
    """A text file's bytes; a gzipped one (man pages, docs) decompressed; else nothing."""
    if path.suffix == ".gz":
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error):
            return b""
    return path.read_bytes() if path.suffix in TEXT_SUFFIXES else b""


def text_corpus(limit: int) -> bytes:
    """Real text from /usr/share (sorted walk, gzipped files unpacked), ``limit`` bytes; only
    if the machine has too little is it repeated (shifted, so 1 MiB blocks do not repeat)."""
    parts: list[bytes] = []
    have = 0
    for root, dirs, names in os.walk("/usr/share"):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = _text_of(path)
            parts.append(data)
            have += len(data)
            if have >= limit:
                return b"".join(parts)[:limit]
    corpus = b"".join(parts) + b"\n"
    return (corpus * (limit // max(1, len(corpus)) + 1))[:limit]


def build_disk(path: Path, size: int, seed: int) -> None:
    """A qcow2 of 1 MiB runs: 1/5 unallocated, 1/4 written zeros, 1/4 random, the rest text."""
    rng = np.random.default_rng([seed, 90])
    kinds = rng.choice(4, size=size // MiB, p=[0.2, 0.25, 0.25, 0.3])
    text = text_corpus(int((kinds == 3).sum()) * MiB)
    raw = path.with_suffix(".raw")
    used = 0
    with raw.open("wb") as f:
        f.truncate(size)
        for i, kind in enumerate(kinds):
            if kind == 2:
                f.seek(i * MiB)
                f.write(rng.bytes(MiB))
            elif kind == 3:
                f.seek(i * MiB)
                f.write(text[used : used + MiB])
                used += MiB
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    raw.unlink()
    # convert leaves zero blocks unallocated: write them as data, as a guest would
    writes = [f"write -P 0 {i * MiB} {MiB}" for i, k in enumerate(kinds) if k == 1]
    for start in range(0, len(writes), 200):
        args = [a for w in writes[start : start + 200] for a in ("-c", w)]
        subprocess.run(["qemu-io", "-f", "qcow2", *args, path], check=True, capture_output=True)
    os.chmod(path, 0o644)


def cached_disk(workdir: Path, size: int, seed: int) -> Path:
    path = workdir / "data" / f"vm-disk-v2-seed{seed}-{size}.qcow2"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".building.qcow2")
        build_disk(tmp, size, seed)
        tmp.rename(path)
    return path


def qemu_cpu(name: str) -> float:
    """CPU seconds (user + system) the domain's QEMU process has used so far."""
    pid = Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip()
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def allocated(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(allocated(p) for p in path.rglob("*") if p.is_file())


def backup_size(repo: Path) -> int:
    """Allocated bytes of a backup, without strongroom's ``.reserve`` (zeros held for a full
    disk, no data: as in harness.py)."""
    reserve = repo / ".reserve"
    return allocated(repo) - (allocated(reserve) if reserve.exists() else 0)


class VmTool:
    """How one tool backs up the domain, incrementally, and restores the last backup."""

    name = ""

    def __init__(self, ws: Workspace, log: Path) -> None:
        self.ws = ws
        self.log = log

    def env(self) -> dict[str, str]:
        keep = ("PATH", "LANG", "LC_ALL", "HOME", "USER", "LOGNAME")
        return {k: os.environ[k] for k in keep if k in os.environ}

    def init(self) -> None:
        """Prepare an empty backup target."""

    def backup(self, domain: str, level: str) -> list[str]:
        raise NotImplementedError

    def restore(self) -> tuple[list[str], Path]:
        raise NotImplementedError

    def note_backup(self, json_out: Path) -> None:
        """Read what a backup printed (strongroom: the point to restore)."""


class StrongroomVm(VmTool):
    name = "strongroom"

    def __init__(self, ws: Workspace, log: Path) -> None:
        super().__init__(ws, log)
        self.tool = Strongroom("strongroom")
        self.point = ""

    def env(self) -> dict[str, str]:
        return self.tool.env(self.ws)

    def init(self) -> None:
        run_quiet([self.tool.exe, "init"], self.env(), self.log)

    def backup(self, domain: str, level: str) -> list[str]:
        return [self.tool.exe, "backup", "vm", domain, "--json"]

    def note_backup(self, json_out: Path) -> None:
        self.point = str(json.loads(json_out.read_text())["point"])

    def restore(self) -> tuple[list[str], Path]:
        out = self.ws.restore / "vda.qcow2"
        argv = [self.tool.exe, "restore", "disk", self.point, "vda", "--to", str(out), "--json"]
        return argv, out


class StrongroomVmKeyFile(StrongroomVm):
    """The same, opening the vault with a key file (``key add --new-key-file``): how a host's
    unattended backups run, with no Argon2id derivation per command."""

    name = "strongroom-keyfile"

    def key(self) -> Path:
        return self.ws.cache / "host.key"

    def env(self) -> dict[str, str]:
        env = super().env()
        del env["STRONGROOM_PASSWORD"]
        env["STRONGROOM_PASSWORD_FILE"] = str(self.key())
        return env

    def init(self) -> None:
        with_passphrase = super().env()
        run_quiet([self.tool.exe, "init"], with_passphrase, self.log)
        self.key().unlink(missing_ok=True)
        add = [self.tool.exe, "key", "add", "--new-key-file", str(self.key())]
        run_quiet(add, with_passphrase, self.log)


class Virtnbdbackup(VmTool):
    name = "virtnbdbackup"
    compress = False

    def backup(self, domain: str, level: str) -> list[str]:
        argv = ["virtnbdbackup", "-d", domain, "-l", level, "-o", str(self.ws.repo), "-n"]
        return argv + (["-z"] if self.compress else [])

    def restore(self) -> tuple[list[str], Path]:
        return ["virtnbdrestore", "-i", str(self.ws.repo), "-o", str(self.ws.restore)], (
            self.ws.restore
        )


class VirtnbdbackupCompressed(Virtnbdbackup):
    name = "virtnbdbackup-z"
    compress = True


def start_daemons() -> Any:
    """libvirtd and virtlogd (started with -d when not running); a qemu:///system connection."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors raise; no stderr noise
    for daemon in ("virtlogd", "libvirtd"):
        if (
            subprocess.run(["pgrep", "-x", daemon], capture_output=True, check=False).returncode
            != 0
        ):
            subprocess.run([daemon, "-d"], check=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            return libvirt.open("qemu:///system")
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@dataclass
class VmBench:
    conn: Any
    workdir: Path
    base_disk: Path
    image: Any  # tests.libvirt.guest.GuestImage
    logs: Path
    seed: int
    results: list[Result] = field(default_factory=list)

    def domain(self, folder: Path, name: str) -> Any:
        """A domain defined on a fresh copy of the data disk (not started)."""
        from tests.libvirt._guest import DiskSpec, Guest, domain_xml

        (folder / "sockets").mkdir(parents=True)
        os.chmod(folder / "sockets", 0o777)
        os.chmod(folder, 0o755)
        disk = folder / "vda.qcow2"
        subprocess.run(["cp", "--sparse=always", self.base_disk, disk], check=True)
        os.chmod(disk, 0o666)
        disks = [(DiskSpec("vda"), disk)]
        guest = Guest(self.conn, name, folder, self.image, disks, True)
        self.conn.defineXML(domain_xml(name, folder, self.image, disks, True))
        return guest

    def change(self, guest: Any, size: int, run: int) -> None:
        """1 % of the disk rewritten by the guest, in 1 MiB writes at seeded offsets."""
        rng = np.random.default_rng([self.seed, 91, run])
        blocks = rng.choice(size // MiB, size=max(1, size // MiB // 100), replace=False)
        loop = " ".join(str(int(b)) for b in sorted(blocks))
        guest.sh.check(
            f"for o in {loop}; do dd if=/dev/urandom of=/dev/vda bs=1M seek=$o count=1 "
            "conv=notrunc 2>/dev/null; done; sync",
            timeout=600,
        )

    def timed(self, tool: VmTool, op: str, run: int, argv: list[str], qemu: str | None) -> Result:
        json_out = self.logs / f"{tool.name}-{op.replace(' ', '_')}-{run}.json"
        before = qemu_cpu(qemu) if qemu else 0.0
        sample = run_measured(argv, tool.env(), tool.log, stdout=json_out)
        spent = qemu_cpu(qemu) - before if qemu else 0.0
        result = Result(op, tool.name, run, sample, round(spent, 3))
        self.results.append(result)
        print(
            f"  run {run + 1} {op:20} {tool.name:16} wall {sample.wall:7.2f} s  "
            f"cpu {sample.cpu:6.2f} s  qemu cpu {spent:6.2f} s  "
            f"rss {sample.max_rss / MiB:5.0f} MiB  load {sample.load1:.1f}",
            flush=True,
        )
        if op != "restore":
            tool.note_backup(json_out)
        return result

    def run_tool(self, tool: VmTool, run: int, size: int) -> None:
        folder = self.workdir / "vm" / f"{tool.name}-{run}"
        shutil.rmtree(folder, ignore_errors=True)
        for path in (tool.ws.repo, tool.ws.restore):
            shutil.rmtree(path, ignore_errors=True)
        tool.ws.cache.mkdir(parents=True, exist_ok=True)
        tool.ws.restore.mkdir(parents=True)
        tool.init()
        name = f"srbench-{os.getpid():x}-{tool.name}-{run}"
        guest = self.domain(folder, name)
        try:
            boot(guest)
            full = self.timed(tool, "full backup", run, tool.backup(name, "full"), name)
            full.extra["written_out"] = written_out(tool.ws.repo)
            full.backup_size = backup_size(tool.ws.repo)
            self.change(guest, size, run)
            inc = self.timed(tool, "incremental 1 %", run, tool.backup(name, "inc"), name)
            inc.extra["written_out"] = written_out(tool.ws.repo)
            inc.backup_size = backup_size(tool.ws.repo)
            guest.stop()
            argv, out = tool.restore()
            restored = self.timed(tool, "restore", run, argv, None)
            # virtnbdrestore writes the disk (named like the original) beside the domain's XML
            image = out if out.is_file() else max(out.iterdir(), key=lambda p: p.stat().st_size)
            settled = settle(image)
            restored.sample = dataclasses.replace(
                restored.sample, wall=restored.sample.wall + settled
            )
            restored.extra["settle"] = settled
            restored.extra["allocated"] = allocated(image)
            restored.extra["verified"] = compare(folder / "vda.qcow2", image)
        finally:
            guest.remove()
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(tool.ws.restore, ignore_errors=True)


def boot(guest: Any) -> None:
    """Start the domain and wait for its console and agent, patiently: a TCG guest on a
    loaded machine answers the console slower than the tests' handshake asks."""
    from tests.libvirt._guest import Console

    class PatientConsole(Console):
        def _handshake(self, deadline: float) -> None:
            while True:
                try:
                    self.run("true", timeout=10.0)
                    return
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise

    guest.dom.create()
    guest.console = PatientConsole(guest.folder / "sockets" / f"{guest.name}-console.sock", 300)
    guest.wait_agent(timeout=300)


def settle(image: Path, limit: float = 120.0) -> float:
    """Seconds until the restored image is written out: no helper (virtnbdrestore's qemu-nbd)
    holds its lock any more, then ``syncfs``; part of the restore's time, as in harness.py."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        info = ["qemu-img", "info", str(image)]
        if subprocess.run(info, capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.05)
    sync_filesystem(image)
    return time.perf_counter() - started


def written_out(repo: Path) -> float:
    """Seconds until the backup's own files are written to the disk, right after the backup:
    ``sync_file_range`` (wait, write, wait) on each.  Not ``syncfs``: that also waited for
    every other dirty page of the file system (the running guest's disk image among them),
    2.1 s after a strongroom backup whose packs were all fsynced.  Neither tool's last device
    cache flush is counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    started = time.perf_counter()
    for path in repo.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), _SYNC_RANGE_ALL)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def compare(original: Path, restored: Path) -> bool:
    """Whether the restored image holds the disk's bytes (after :func:`settle`)."""
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", restored],
        capture_output=True,
        text=True,
        check=False,
    )
    if info.returncode != 0:
        print(f"  verification failed: {info.stderr.strip()}", flush=True)
        return False
    fmt = json.loads(info.stdout)["format"]
    argv = ["qemu-img", "compare", "-f", "qcow2", "-F", fmt, original, restored]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"  verification failed: {result.stdout.strip()} {result.stderr.strip()}")
    return result.returncode == 0


def medians(results: list[Result]) -> dict[tuple[str, str], dict[str, float]]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.op, r.tool), []).append(r)
    table: dict[tuple[str, str], dict[str, float]] = {}
    for key, group in groups.items():
        row = {
            "wall": statistics.median(r.sample.wall for r in group),
            "cpu": statistics.median(r.sample.cpu for r in group),
            "qemu": statistics.median(r.qemu_cpu for r in group),
            "rss": statistics.median(r.sample.max_rss for r in group),
            "load": statistics.median(r.sample.load1 for r in group),
            "steal": statistics.median(r.sample.steal_pct for r in group),
            "iowait": statistics.median(r.sample.iowait_pct for r in group),
            "runs": len(group),
        }
        sizes = [r.backup_size for r in group if r.backup_size is not None]
        if sizes:
            row["size"] = statistics.median(sizes)
        for name in ("allocated", "verified", "settle", "written_out"):
            values = [float(r.extra[name]) for r in group if name in r.extra]
            if values:
                row[name] = min(values) if name == "verified" else statistics.median(values)
        table[key] = row
    return table


def _cell(row: dict[str, float], mine: dict[str, float] | None, peer: bool) -> str:
    if mine is None or not peer:
        return ""
    parts = [mine[k] / row[k] for k in ("wall", "cpu", "qemu") if row[k] > 0]
    return " / ".join(f"{p:.2f}x" for p in parts)


def render(results: list[Result], tools: list[str], head: list[str]) -> str:
    table = medians(results)
    lines = [
        *head,
        "",
        "| operation | tool | wall s | CPU s | cores used | QEMU CPU s | peak RSS MiB "
        "| backup MiB | strongroom ÷ tool: wall / CPU / QEMU CPU | targets (vs virtnbdbackup) "
        "| load / steal % / iowait % | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for op in ("full backup", "incremental 1 %", "restore"):
        mine = table.get((op, "strongroom"))
        for tool in tools:
            row = table.get((op, tool))
            if row is None:
                continue
            checks = ""
            peer = table.get((op, "virtnbdbackup"))
            if tool.startswith("strongroom") and peer is not None:
                found = vm_checks(op, _numbers(row), _numbers(peer))
                if "written_out" in row and "written_out" in peer:
                    found.append(_on_disk(found[0].limit, row, peer))
                checks = "; ".join(c.text() for c in found)
            size = f"{row['size'] / MiB:,.0f}" if "size" in row else ""
            notes = []
            if "verified" in row:
                notes.append("verified" if row["verified"] else "**VERIFY FAILED**")
            if "allocated" in row:
                notes.append(f"restored image allocated {row['allocated'] / MiB:,.0f} MiB")
            if "settle" in row:
                notes.append(f"incl. {row['settle']:.2f} s until written out")
            if "written_out" in row:
                notes.append(f"then {row['written_out']:.2f} s until on disk")
            cores = row["cpu"] / row["wall"] if row["wall"] else 0.0
            lines.append(
                f"| {op} | {tool} | {row['wall']:.2f} | {row['cpu']:.2f} | {cores:.2f} "
                f"| {row['qemu']:.2f} | {row['rss'] / MiB:,.0f} | {size} "
                f"| {_cell(row, mine, not tool.startswith('strongroom'))} | {checks} "
                f"| {row['load']:.1f} / {row['steal']:.1f} / {row['iowait']:.1f} "
                f"| {', '.join(notes)} |"
            )
    return "\n".join(lines) + "\n"


def _on_disk(limit: float, mine: dict[str, float], peer: dict[str, float]) -> Check:
    """The wall-time ratio with each backup's time until it is on disk added."""
    ratio = (mine["wall"] + mine["written_out"]) / (peer["wall"] + peer["written_out"])
    return Check("on disk", ratio, limit)


def _numbers(row: dict[str, float]) -> Numbers:
    return Numbers(row["wall"], row["cpu"], int(row["rss"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--disk-size", default="2G", help="the data disk's virtual size (M or G)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--compress", action="store_true", help="also virtnbdbackup --compress")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-bench-vm"))
    return p.parse_args(argv)


def tools_for(args: argparse.Namespace, workdir: Path, logs: Path) -> Iterator[VmTool]:
    kinds: list[type[VmTool]] = [StrongroomVm, StrongroomVmKeyFile, Virtnbdbackup]
    if args.compress:
        kinds.append(VirtnbdbackupCompressed)
    for kind in kinds:
        w = workdir / "repos"
        ws = Workspace(
            w / kind.name, workdir / "cache" / kind.name, workdir / "restore" / kind.name
        )
        yield kind(ws, logs / f"{kind.name}.log")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unit = {"M": MiB, "G": 1 << 30}[args.disk_size[-1].upper()]
    size = int(float(args.disk_size[:-1]) * unit)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o711)  # libvirt's qemu user reaches the disks below
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    logs = workdir / "logs" / stamp
    logs.mkdir(parents=True)
    from tests.libvirt._guest import copy_image
    from tests.libvirt.guest import guest_image

    print(f"vm bench: data disk {size / MiB:,.0f} MiB", flush=True)
    base = cached_disk(workdir, size, args.seed)
    conn = start_daemons()
    image = copy_image(guest_image(), workdir / "boot")
    bench = VmBench(conn, workdir, base, image, logs, args.seed)
    tools = list(tools_for(args, workdir, logs))
    for run in range(args.runs):
        shift = run % len(tools)
        for tool in tools[shift:] + tools[:shift]:  # each tool in turn, order rotating
            try:
                bench.run_tool(tool, run, size)
            except (CommandFailed, TimeoutError, ConnectionError) as exc:
                # a TCG guest on a loaded machine may not boot in time: that run is lost
                print(f"  FAILED: {tool.name}: {str(exc)[:300]}", flush=True)
    info = machine_info([])
    info["virtnbdbackup"] = subprocess.run(
        ["virtnbdbackup", "-V"], capture_output=True, text=True, check=False
    ).stdout.strip()
    allocated_mib = allocated(base) / MiB
    describe = f"{size / MiB:,.0f} MiB qcow2, {allocated_mib:,.0f} MiB allocated"
    head = ["# strongroom vs virtnbdbackup on a running TCG domain", ""]
    head += header(info, {"vm disk": describe}, args.runs)
    text = render(bench.results, [t.name for t in tools], head)
    results = workdir / "results"
    results.mkdir(exist_ok=True)
    (results / f"vm-{stamp}.md").write_text(text)
    doc = {"machine": info, "disk": describe, "results": [asdict(r) for r in bench.results]}
    (results / f"vm-{stamp}.json").write_text(json.dumps(doc, indent=2))
    print("\n" + text)
    print(f"results: {results}/vm-{stamp}.md; logs: {logs}", flush=True)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

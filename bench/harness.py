"""strongroom side by side with restic and borg: backups and restores on the same data.

    python bench/harness.py [--runs 3] [--quick] [--only image|tree|sparse ...]
                            [--workdir /var/tmp/strongroom-bench] [--tools strongroom,restic,...]

(``bash bench/run.sh`` installs restic, borg and strongroom first, then runs this.)

Per data set and run: every tool gets a fresh repository; then, one step at a time and the
tools in alternation (their order rotating from run to run), the first backup, the backup of
unchanged data, the backup after a 1 % change, and a restore of that last backup, verified
with ``cmp`` / ``diff -r``.  The sparse image only gets a first backup.  Before each timed
command: ``sync`` (no writeback of earlier steps inside the timing) and the inputs, repository
and cache read into the page cache; then a wait (up to ``--quiet-wait``) until no other process
uses the CPU.  A sample during which other processes used more than 0.15 of a core anyway is
marked noisy; medians are over the clean samples, and extra runs are made (up to
``--max-runs``) while some operation has fewer clean samples than ``--runs``.  Restore times
include a ``syncfs`` of the target (so a tool that fsyncs pays the same as one that leaves it
to the kernel); a restored tree is kept until the next run (see ``Bench.settle_deletes``).
After a data set, its repositories are removed and its data evicted from the page cache.

The table of medians is printed and saved with every sample as JSON under
``WORKDIR/results/``.  This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from datasets import FULL, QUICK, Dataset, ImageDataset, MiB, Sizes, make_datasets
from measure import (
    CommandFailed,
    evict,
    run_measured,
    run_quiet,
    sync_filesystem,
    wait_for_quiet,
    warm,
)
from report import Measurement, measurements_from_json, render_markdown, to_json
from tools import Step, Strongroom, Target, Tool, Workspace, all_tools

DATASETS = ("image", "tree", "sparse")
# a sample is noisy when other processes used more than this share of a core meanwhile
NOISE_CORES = 0.15
NOISE_FLOOR = 0.2  # seconds of foreign CPU always tolerated
OP_NAMES = {
    ("image", Step.FIRST): "image: first backup",
    ("image", Step.UNCHANGED): "image: unchanged, full re-read",
    ("image", Step.CHANGED): "image: after 1 % change",
    ("tree", Step.FIRST): "tree: first backup",
    ("tree", Step.UNCHANGED): "tree: unchanged",
    ("tree", Step.CHANGED): "tree: after 1 % change",
    ("sparse", Step.FIRST): "sparse: first backup",
}


class Bench:
    """Runs the steps of every data set for every tool and collects the measurements."""

    def __init__(
        self, workdir: Path, tools: Sequence[Tool], timeout: float, quiet_wait: float
    ) -> None:
        self.workdir = workdir
        self.tools = list(tools)
        self.timeout = timeout
        self.quiet_wait = quiet_wait
        self.deleted_at = 0.0  # time.monotonic() of the last deletion of many files
        self.measurements: list[Measurement] = []
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.logs = workdir / "logs" / stamp
        self.logs.mkdir(parents=True)

    def workspace(self, tool: Tool, ds: Dataset) -> Workspace:
        key = f"{tool.name}-{ds.name}"
        w = self.workdir
        return Workspace(
            repo=w / "repos" / key, cache=w / "cache" / key, restore=w / "restore" / key
        )

    def log(self, tool: Tool, ds: Dataset) -> Path:
        return self.logs / f"{tool.name}-{ds.name}.log"

    def run_dataset(self, ds: Dataset, run: int) -> None:
        """One run: fresh repositories, each step for every tool in turn, the restores.

        A tool whose command fails is reported and left out of the rest of this run.
        """
        shift = run % len(self.tools)
        order = self.tools[shift:] + self.tools[:shift]
        target = Target(ds.path, is_image=ds.name != "tree", source=f"bench-{ds.name}")
        for tool in order:
            ws = self.workspace(tool, ds)
            ws.reset()
            self.deleted_at = time.monotonic()
            init = tool.init(ws)
            run_quiet(init.argv, init.env, self.log(tool, ds), init.cwd)
        steps = [Step.FIRST] if ds.name == "sparse" else list(Step)
        failed: set[str] = set()
        try:
            for step in steps:
                if step is Step.CHANGED:
                    ds.change()
                for tool in order:
                    self.guarded(failed, tool, self.timed_backup, ds, target, step, run)
            if ds.name != "sparse":
                for tool in order:
                    self.guarded(failed, tool, self.timed_restore, ds, target, run)
        finally:
            if Step.CHANGED in steps:
                ds.revert()

    @staticmethod
    def guarded(failed: set[str], tool: Tool, action: Callable[..., None], *args: object) -> None:
        if tool.name in failed:
            return
        try:
            action(tool, *args)
        except CommandFailed as exc:
            failed.add(tool.name)
            print(f"  FAILED: {tool.name}: {exc}", flush=True)

    def prepare(self, tool: Tool, ws: Workspace, ds: Dataset, inputs: Sequence[Path]) -> None:
        """Flush earlier writes, then warm the program, inputs, repository and cache."""
        os.sync()
        probe = tool.version_argv()
        run_quiet(probe, tool.env(ws), self.log(tool, ds))
        warm([*inputs, ws.repo, ws.cache])
        if self.quiet_wait > 0:
            waited = wait_for_quiet(self.quiet_wait)
            if waited > 5:
                print(f"  (waited {waited:.0f} s for other jobs to finish)", flush=True)

    def timed_backup(self, tool: Tool, ds: Dataset, target: Target, step: Step, run: int) -> None:
        ws = self.workspace(tool, ds)
        cmd = tool.backup(ws, target, step)
        op = OP_NAMES[(ds.name, step)]
        summary = self.logs / f"{tool.name}-{ds.name}-{step.value}-{run}.json"
        json_out = summary if isinstance(tool, Strongroom) else None
        self.prepare(tool, ws, ds, [ds.path])
        sample = run_measured(
            cmd.argv,
            cmd.env,
            self.log(tool, ds),
            cwd=cmd.cwd,
            stdout=json_out,
            timeout=self.timeout,
        )
        extra: dict[str, float | int | bool] = {}
        if json_out is not None:
            extra["bytes_read"] = int(json.loads(json_out.read_text())["bytes_read"])
        self.record(Measurement(op, tool.name, run, sample, tool.repo_size(ws), extra))

    def timed_restore(self, tool: Tool, ds: Dataset, target: Target, run: int) -> None:
        ws = self.workspace(tool, ds)
        ws.restore.mkdir(parents=True, exist_ok=True)  # emptied by the run's reset
        self.settle_deletes()
        cmd, out = tool.restore(ws, target, Step.CHANGED)
        self.prepare(tool, ws, ds, [])
        sample = run_measured(
            cmd.argv, cmd.env, self.log(tool, ds), cwd=cmd.cwd, timeout=self.timeout
        )
        started = time.perf_counter()
        sync_filesystem(ws.restore)
        synced = time.perf_counter() - started
        extra: dict[str, float | int | bool] = {"sync": synced}
        extra["verified"] = self.verify(tool, ds, out)
        if target.is_image and out.exists():
            extra["allocated"] = out.stat().st_blocks * 512
            # one big file: deleting it costs the next restore nothing, and keeping it would
            # fill the page cache (the next tool's writes then pay for reclaim)
            shutil.rmtree(ws.restore, ignore_errors=True)
        total = dataclasses.replace(sample, wall=sample.wall + synced)
        self.record(Measurement(f"{ds.name}: restore", tool.name, run, total, None, extra))

    def settle_deletes(self) -> None:
        """Wait until files deleted by this harness are no longer "recently deleted".

        On ext4 without a journal (this machine's root) creating an inode scans past inodes
        deleted within ``dirty_expire_centisecs``: a tree restore right after deleting the
        previous 20,000-file restore took 2-5x longer.  Restored output is therefore kept
        until the next run's reset, and restores wait out the window after any deletion.
        """
        window = int(Path("/proc/sys/vm/dirty_expire_centisecs").read_text()) / 100 + 5
        wait = self.deleted_at + window - time.monotonic()
        if wait > 0:
            print(f"  (waiting {wait:.0f} s after deleting files)", flush=True)
            time.sleep(wait)

    def finish(self, ds: Dataset) -> None:
        """After a data set's runs: free its disk space and page cache for the next one."""
        for tool in self.tools:
            ws = self.workspace(tool, ds)
            for path in (ws.restore, ws.repo, ws.cache):
                shutil.rmtree(path, ignore_errors=True)
        self.deleted_at = time.monotonic()
        evict([ds.path])

    def verify(self, tool: Tool, ds: Dataset, out: Path) -> bool:
        if ds.path.is_dir():
            argv = ["diff", "-r", "-q", str(ds.path), str(out)]
        else:
            argv = ["cmp", str(ds.path), str(out)]
        try:
            run_quiet(argv, None, self.log(tool, ds))
        except CommandFailed as exc:
            print(f"  verification failed: {exc}", flush=True)
            return False
        return True

    def record(self, m: Measurement) -> None:
        s = m.sample
        m.extra["noisy"] = s.foreign_cpu > max(NOISE_FLOOR, NOISE_CORES * s.wall)
        self.measurements.append(m)
        size = "" if m.repo_size is None else f"  repo {m.repo_size / MiB:8,.0f} MiB"
        noise = f"  NOISY: others used {s.foreign_cpu:.1f} s CPU" if m.extra["noisy"] else ""
        print(
            f"  run {m.run + 1} {m.op:32} {m.tool:11} wall {s.wall:7.2f} s  cpu {s.cpu:7.2f} s"
            f"  rss {s.max_rss / MiB:6,.0f} MiB{size}{noise}",
            flush=True,
        )

    def clean_runs_missing(self, ds: Dataset, runs: int) -> bool:
        """Whether some operation of ``ds`` has fewer than ``runs`` samples without noise."""
        counts: dict[tuple[str, str], int] = {}
        for m in self.measurements:
            if m.op.startswith(f"{ds.name}:"):
                key = (m.op, m.tool)
                counts[key] = counts.get(key, 0) + (not m.extra.get("noisy"))
        return any(n < runs for n in counts.values())


def _output(argv: Sequence[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "missing"


def machine_info(tools: Sequence[Tool]) -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next((ln for ln in _output(["free", "-g"]).splitlines() if ln.startswith("Mem:")), "")
    repo = Path(__file__).resolve().parent.parent
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": _output(["nproc"]),
        "memory_gib": mem.split()[1] if mem else "?",
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", "?"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "strongroom": _output(["git", "-C", str(repo), "describe", "--always", "--dirty"]),
    }
    names = {t.name.split("-")[0] for t in tools}
    if "restic" in names:
        info["restic"] = _output(["restic", "version"]).split(" compiled")[0]
    if "borg" in names:
        info["borg"] = _output(["borg", "--version"])
    return info


def header(info: dict[str, str], datasets: dict[str, str], runs: int) -> list[str]:
    peers = ", ".join(info[k] for k in ("restic", "borg") if k in info)
    lines = [
        f"Date: {info['date']}. Machine: {info['cpu']}, {info['nproc']} cores (nproc), "
        f"{info['memory_gib']} GiB RAM (free -g), {info['os']}, Linux {info['kernel']}. "
        f"strongroom {info['strongroom']} (Python {info['python']}); {peers}. "
        f"Median of {runs} run(s) without noise (a run during which other processes used more "
        f"than {NOISE_CORES} of a core is noisy and repeated, up to twice as many runs).",
        "",
    ]
    lines += [f"- {name}: {text}" for name, text in datasets.items()]
    return lines


def facts(datasets: dict[str, Dataset], sizes: Sizes) -> dict[str, int]:
    image = datasets["image"]
    assert isinstance(image, ImageDataset)
    nonzero = int((image.layout() != 0).sum()) * MiB
    return {
        "image_bytes": sizes.image,
        "image_data_bytes": nonzero,
        "tree_files": sizes.files,
        "sparse_bytes": sizes.sparse,
        "sparse_data_bytes": sizes.sparse_data,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per data set (default 3; 1 quick)")
    p.add_argument("--quick", action="store_true", help="small data sets, a sanity check")
    p.add_argument(
        "--only", action="append", choices=DATASETS, help="only this data set (repeatable)"
    )
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-bench"))
    p.add_argument("--tools", default=None, help="comma-separated subset of the tools")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per command")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=300.0,
        help="before each timed command, wait up to this long for the machine to be idle (0: off)",
    )
    p.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help="extra runs while samples are noisy, up to this many (default 2 x runs)",
    )
    p.add_argument(
        "--report", type=Path, default=None, help="only print the table of a saved results JSON"
    )
    return p.parse_args(argv)


def select_tools(spec: str | None) -> list[Tool]:
    tools = all_tools()
    if spec is None:
        return tools
    wanted = spec.split(",")
    unknown = set(wanted) - {t.name for t in tools}
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(sorted(unknown))}")
    return [t for t in tools if t.name in wanted]


def reprint(path: Path) -> int:
    doc = json.loads(path.read_text())
    settings = doc["settings"]
    head = header(doc["machine"], settings["datasets"], settings["runs"])
    print(render_markdown(measurements_from_json(doc), settings["tools"], head, doc["facts"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        return reprint(args.report)
    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    tools = select_tools(args.tools)
    workdir: Path = args.workdir.resolve()
    all_sets = make_datasets(workdir / "data", args.seed, sizes)
    chosen = [all_sets[name] for name in DATASETS if name in (args.only or DATASETS)]
    info = machine_info(tools)
    print(f"strongroom bench: {info}", flush=True)
    max_runs = args.max_runs or 2 * runs
    bench = Bench(workdir, tools, args.timeout, args.quiet_wait)
    for ds in chosen:
        started = time.perf_counter()
        print(f"{ds.name}: preparing {ds.describe()} in {ds.dir}", flush=True)
        ds.ensure()
        print(f"{ds.name}: ready in {time.perf_counter() - started:.0f} s", flush=True)
        run = 0
        while run < runs or (run < max_runs and bench.clean_runs_missing(ds, runs)):
            bench.run_dataset(ds, run)
            run += 1
        bench.finish(ds)
    names = [t.name for t in tools]
    descriptions = {ds.name: ds.describe() for ds in chosen}
    fact = facts(all_sets, sizes)
    text = render_markdown(bench.measurements, names, header(info, descriptions, runs), fact)
    settings = {
        "runs": runs,
        "quick": args.quick,
        "seed": args.seed,
        "tools": names,
        "noise": {"cores": NOISE_CORES, "floor": NOISE_FLOOR, "quiet_wait": args.quiet_wait},
        "datasets": descriptions,
    }
    doc = to_json(bench.measurements, info, fact, settings)
    results = workdir / "results"
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"bench-{bench.logs.name}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    print("\n" + text)
    print(f"results: {stem}.md, {stem}.json; logs: {bench.logs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

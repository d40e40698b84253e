"""strongroom side by side with restic and borg: backups and restores on the same data.

    python bench/harness.py [--runs 3] [--size tiny|quick|full] [--datasets image,tree,...]
                            [--cores 1,2] [--profile gil] [--tools strongroom,restic,...]
                            [--workdir /var/tmp/strongroom-bench] [--restore-fs loop|workdir]

(``bash bench/run.sh`` installs restic, borg 1.2 and 1.4, py-spy and strongroom first, then runs
this; docs/benchmarks.md describes the data sets and how to read the report.)

Per data set and run: every tool gets a fresh repository; then, one step at a time and the tools
in alternation (their order rotating from run to run), the first backup, the backup of unchanged
data, the backup after a 1 % change, and a restore of that last backup, verified with ``cmp`` /
``diff -r``. The sparse image only gets a first backup. With ``--cores 1,2`` each run is made
once per core count, every command pinned with ``taskset -c 0`` / ``0-1``. Before each timed
command: ``sync`` (no writeback of earlier steps inside the timing) and the inputs, repository
and cache read into the page cache; then a wait (up to ``--quiet-wait``) until no other process
uses the CPU. A sample during which other processes used more than 0.15 of a core anyway is
marked noisy; medians are over the clean samples, and extra runs are made (up to ``--max-runs``)
while some operation has fewer clean samples than ``--runs``. Restore times include a ``syncfs``
of the target (so a tool that fsyncs pays the same as one that leaves it to the kernel).
Restores go to a fresh journaled ext4 on a loop device (``restorefs.py`` says why); with
``--restore-fs workdir`` they go to the workdir, a restored tree is kept until the next run and
restores wait out ext4's "recently deleted" window (see ``Bench.settle_deletes``). After a data
set, its repositories are removed and its data evicted from the page cache.

The table of medians is printed and saved with every sample as JSON under ``WORKDIR/results/``.
This is not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import ceiling
import gilprofile
from datasets import FULL, QUICK, TINY, Dataset, GiB, MiB, Sizes
from datasets_more import NAMES, CopiedTree, make_all
from info import NOISE_CORES, NOISE_FLOOR, facts, header, machine_info
from machine import cpu_list, machine_cpus, parse_cores
from measure import (
    CommandFailed,
    compact_memory,
    evict,
    run_measured,
    run_quiet,
    sync_filesystem,
    wait_for_quiet,
    warm,
)
from merge import merge_results
from report import Measurement, measurements_from_json, render_markdown, to_json
from restorefs import RestoreFs
from scoring import op_name
from tools import DEFAULT_TOOLS, Command, Step, Strongroom, Target, Tool, Workspace, all_tools

PRESETS = {"tiny": TINY, "quick": QUICK, "full": FULL}
DEFAULT_DATASETS = (
    "image",
    "tree",
    "sparse",
    "zeros4k",
    "text-mid",
    "usr",
    "etc",
    "small",
    "big",
    "copies",
)


def step_label(ds: Dataset, step: Step) -> str:
    if step is Step.FIRST:
        return "first backup"
    if step is Step.UNCHANGED:
        return "unchanged, full re-read" if ds.is_image else "unchanged"
    return "after 1 % change"


class Bench:
    """Runs the steps of every data set for every tool and collects the measurements."""

    def __init__(
        self,
        workdir: Path,
        tools: Sequence[Tool],
        timeout: float,
        quiet_wait: float,
        restores: RestoreFs | None = None,
    ) -> None:
        self.cores: int | None = None  # the current run's pinning (--cores), None: unpinned
        self.profile = False  # --profile gil: strongroom's commands under py-spy
        self.workdir = workdir
        self.tools = list(tools)
        self.timeout = timeout
        self.quiet_wait = quiet_wait
        self.deleted_at = 0.0  # time.monotonic() of the last deletion of many files
        self.restore_root = restores.root if restores else workdir / "restore"
        self.journaled = restores.journaled if restores else False
        self.measurements: list[Measurement] = []
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.logs = workdir / "logs" / stamp
        self.logs.mkdir(parents=True)

    def workspace(self, tool: Tool, ds: Dataset) -> Workspace:
        key = f"{tool.name}-{ds.name}"
        w = self.workdir
        return Workspace(
            repo=w / "repos" / key, cache=w / "cache" / key, restore=self.restore_root / key
        )

    def log(self, tool: Tool, ds: Dataset) -> Path:
        return self.logs / f"{tool.name}-{ds.name}.log"

    def op(self, ds: Dataset, what: str) -> str:
        return op_name(ds.name, what, self.cores)

    def wrapped(self, tool: Tool, cmd: Command, label: str) -> list[str]:
        """The command, pinned with taskset (--cores) and under py-spy (--profile gil)."""
        argv = list(cmd.argv)
        if self.profile and isinstance(tool, Strongroom):
            argv = gilprofile.wrap(argv, self.logs / f"gil-{label}.speedscope.json")
        if self.cores is not None:
            argv = ["taskset", "-c", cpu_list(self.cores), *argv]
        return argv

    def run_dataset(self, ds: Dataset, run: int) -> None:
        """One run: fresh repositories, each step for every tool in turn, the restores.

        A tool whose command fails is reported and left out of the rest of this run.
        """
        shift = run % len(self.tools)
        order = self.tools[shift:] + self.tools[:shift]
        target = Target(ds.path, is_image=ds.is_image, source=f"bench-{ds.name}")
        for tool in order:
            ws = self.workspace(tool, ds)
            ws.reset()
            self.deleted_at = time.monotonic()
            init = tool.init(ws)
            run_quiet(init.argv, init.env, self.log(tool, ds), init.cwd)
        steps = [Step.FIRST] if ds.only_first else list(Step)
        failed: set[str] = set()
        try:
            for step in steps:
                if step is Step.CHANGED:
                    ds.change()
                for tool in order:
                    self.guarded(failed, tool, self.timed_backup, ds, target, step, run)
            if not ds.only_first:
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
        """Flush earlier writes, warm the program, inputs, repository and cache, compact
        free memory (``compact_memory``)."""
        os.sync()
        probe = tool.version_argv()
        run_quiet(probe, tool.env(ws), self.log(tool, ds))
        warm([*inputs, ws.repo, ws.cache])
        compact_memory()
        if self.quiet_wait > 0:
            waited = wait_for_quiet(self.quiet_wait)
            if waited > 5:
                print(f"  (waited {waited:.0f} s for other jobs to finish)", flush=True)

    def timed_backup(self, tool: Tool, ds: Dataset, target: Target, step: Step, run: int) -> None:
        ws = self.workspace(tool, ds)
        cmd = tool.backup(ws, target, step)
        op = self.op(ds, step_label(ds, step))
        label = f"{tool.name}-{ds.name}-{step.value}-{run}-{self.cores or 0}"
        summary = self.logs / f"{label}.json"
        json_out = summary if isinstance(tool, Strongroom) else None
        self.prepare(tool, ws, ds, [ds.path])
        sample = run_measured(
            self.wrapped(tool, cmd, label),
            cmd.env,
            self.log(tool, ds),
            cwd=cmd.cwd,
            stdout=json_out,
            timeout=self.timeout,
        )
        extra: dict[str, float | int | bool] = {}
        extra.update(tool.key_params(ws))
        if isinstance(tool, Strongroom):
            extra["reserve"] = tool.reserve_size(ws)
        if json_out is not None:
            text = json_out.read_text()  # under py-spy its own lines may come first
            with contextlib.suppress(ValueError, KeyError):
                extra["bytes_read"] = int(json.loads(text[text.find("{") :])["bytes_read"])
        self.record(Measurement(op, tool.name, run, sample, tool.repo_size(ws), extra))

    def timed_restore(self, tool: Tool, ds: Dataset, target: Target, run: int) -> None:
        ws = self.workspace(tool, ds)
        ws.restore.mkdir(parents=True, exist_ok=True)  # emptied by the run's reset
        self.settle_deletes()
        cmd, out = tool.restore(ws, target, Step.CHANGED)
        self.prepare(tool, ws, ds, [])
        argv = self.wrapped(tool, cmd, f"{tool.name}-{ds.name}-restore-{run}-{self.cores or 0}")
        sample = run_measured(argv, cmd.env, self.log(tool, ds), cwd=cmd.cwd, timeout=self.timeout)
        started = time.perf_counter()
        sync_filesystem(ws.restore)
        synced = time.perf_counter() - started
        extra: dict[str, float | int | bool] = {"sync": synced}
        extra["verified"] = self.verify(tool, ds, out)
        extra.update(tool.key_params(ws))
        if target.is_image and out.exists():
            extra["allocated"] = out.stat().st_blocks * 512
            # one big file: deleting it costs the next restore nothing, and keeping it would
            # fill the page cache (the next tool's writes then pay for reclaim)
            shutil.rmtree(ws.restore, ignore_errors=True)
        elif not ds.keep_restore:  # a few big files: the same, and they would fill the disk
            shutil.rmtree(ws.restore, ignore_errors=True)
        total = dataclasses.replace(sample, wall=sample.wall + synced)
        self.record(Measurement(self.op(ds, "restore"), tool.name, run, total, None, extra))

    def settle_deletes(self) -> None:
        """Wait until files deleted by this harness are no longer "recently deleted".

        On ext4 without a journal (this machine's root) creating an inode scans past inodes
        deleted in the last minute (five while their inode table block is dirty): a tree
        restore right after deleting the previous 20,000-file restore took 2-5x longer.
        Restored output is therefore kept until the next run's reset, and restores wait after
        any deletion (``dirty_expire_centisecs`` + 5 s: not always enough, see
        ``restorefs.py``).  Not needed on the journaled loop file system (the default).
        """
        if self.journaled:
            return
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
            argv = ["diff", "-r", "-q", "--no-dereference", str(ds.path), str(out)]
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
            f"  run {m.run + 1} {m.op:42} {m.tool:11} wall {s.wall:7.2f} s  cpu {s.cpu:7.2f} s"
            f"  rss {s.max_rss / MiB:6,.0f} MiB  pss {s.max_pss / MiB:6,.0f} MiB{size}"
            f"  load {s.load1:.1f} steal {s.steal_pct:.0f}%"
            f"{noise}",
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


def parse_size(text: str) -> int:
    """``512M``, ``4G``, ``1073741824``: bytes."""
    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    suffix = text[-1:].upper()
    if suffix in units:
        return int(float(text[:-1]) * units[suffix])
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per data set (default 3; 1 quick)")
    p.add_argument("--size", choices=PRESETS, default="full", help="data set sizes (preset)")
    p.add_argument("--quick", action="store_true", help="the same as --size quick")
    p.add_argument(
        "--datasets",
        default=None,
        help=f"comma-separated data sets, or 'all' (default: {','.join(DEFAULT_DATASETS)}; "
        f"all: {','.join(NAMES)})",
    )
    p.add_argument("--only", action="append", choices=NAMES, help="a data set (repeatable)")
    p.add_argument(
        "--tree",
        action="append",
        type=Path,
        default=[],
        help="your own folder as a data set, copied into the workdir first (its 1 %% change "
        "edits the copy); repeatable; alone, only these are run",
    )
    p.add_argument("--usr-cap", default=None, help="copy at most this much of /usr ('all': all)")
    p.add_argument("--small-files", type=int, default=None, help="files in the 'small' set")
    p.add_argument("--big-size", default=None, help="size of each 'big' file, e.g. 4G")
    p.add_argument("--big-count", type=int, default=None, help="files in the 'big' set")
    p.add_argument(
        "--full-size",
        action="store_true",
        help="the issue's sizes: all of /usr, 200,000 small files, 3 big files of 4 GiB",
    )
    p.add_argument("--cores", default=None, help="e.g. 1,2: each run pinned to 1 and 2 cores")
    p.add_argument(
        "--profile",
        choices=["gil"],
        default=None,
        help="record strongroom's commands with py-spy --gil (timings are then not comparable)",
    )
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-bench"))
    p.add_argument(
        "--restore-fs",
        choices=["loop", "workdir"],
        default="loop",
        help="restore onto a fresh journaled ext4 on a loop device (default), or the workdir",
    )
    p.add_argument(
        "--tools",
        default=None,
        help=f"comma-separated tools (default {','.join(DEFAULT_TOOLS)}; "
        f"also: {','.join(t.name for t in all_tools() if t.name not in DEFAULT_TOOLS)})",
    )
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
        "--report",
        type=Path,
        action="append",
        default=None,
        help="only print the table of a saved results JSON; repeated: of their runs together",
    )
    p.add_argument(
        "--save", type=Path, default=None, help="with --report: write the (merged) JSON there"
    )
    return p.parse_args(argv)


def sizes_of(args: argparse.Namespace) -> Sizes:
    sizes = PRESETS["quick" if args.quick else args.size]
    if args.full_size:
        sizes = dataclasses.replace(sizes, usr_cap=None, small=200_000, big=4 * GiB, big_count=3)
    if args.usr_cap is not None:
        cap = None if args.usr_cap == "all" else parse_size(args.usr_cap)
        sizes = dataclasses.replace(sizes, usr_cap=cap)
    if args.small_files is not None:
        sizes = dataclasses.replace(sizes, small=args.small_files)
    if args.big_size is not None:
        sizes = dataclasses.replace(sizes, big=parse_size(args.big_size))
    if args.big_count is not None:
        sizes = dataclasses.replace(sizes, big_count=args.big_count)
    return sizes


def chosen_names(args: argparse.Namespace) -> list[str]:
    if args.only:
        return list(args.only)
    if args.datasets is None:
        return [] if args.tree else list(DEFAULT_DATASETS)
    if args.datasets == "all":
        return list(NAMES)
    wanted = [n for n in args.datasets.split(",") if n]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        raise SystemExit(f"unknown data sets: {', '.join(unknown)} (known: {', '.join(NAMES)})")
    return wanted


def own_trees(workdir: Path, args: argparse.Namespace) -> list[Dataset]:
    """``--tree`` folders as data sets named after them (``tree-NAME``), copied whole."""
    trees: list[Dataset] = []
    for path in args.tree:
        source = path.resolve()
        if not source.is_dir():
            raise SystemExit(f"--tree {path}: not a folder")
        name = "tree-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in source.name)
        if any(t.name == name for t in trees):
            name += f"-{len(trees)}"
        trees.append(CopiedTree(workdir / "data", args.seed, name, source, None))
    return trees


def select_tools(spec: str | None, profile: bool = False) -> list[Tool]:
    tools = all_tools()
    wanted = ["strongroom"] if profile else (spec.split(",") if spec else list(DEFAULT_TOOLS))
    unknown = set(wanted) - {t.name for t in tools}
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(sorted(unknown))}")
    return [t for t in tools if t.name in wanted]


def reprint(paths: Sequence[Path], save: Path | None) -> int:
    """The report of saved results; of several, merged (bench/merge.py), saved if asked."""
    docs = []
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"no such results file: {path}")
        try:
            docs.append(json.loads(path.read_text()))
        except ValueError as exc:
            raise SystemExit(f"{path}: not a results file ({exc})") from None
    doc = merge_results(docs) if len(docs) > 1 else docs[0]
    settings = doc["settings"]
    head = header(doc["machine"], settings["datasets"], settings["runs"])
    cpus = machine_cpus(doc["machine"])
    cap = ceiling.summarize([ceiling.CeilingRound(*r) for r in settings.get("ceiling_rounds", [])])
    text = render_markdown(
        measurements_from_json(doc), settings["tools"], head, doc["facts"], cpus, cap
    )
    if save is not None:
        save.write_text(json.dumps(doc, indent=2))
        save.with_suffix(".md").write_text(text)
    print(text)
    return 0


def run_all(
    bench: Bench, chosen: Sequence[Dataset], runs: int, max_runs: int, cores: list[int]
) -> None:
    """Every data set: ``runs`` runs (more while noisy), each once per core count."""
    for ds in chosen:
        started = time.perf_counter()
        print(f"{ds.name}: preparing {ds.describe()} in {ds.dir}", flush=True)
        ds.ensure()
        print(f"{ds.name}: ready in {time.perf_counter() - started:.0f} s", flush=True)
        run = 0
        while run < runs or (run < max_runs and bench.clean_runs_missing(ds, runs)):
            pinning: list[int | None] = list(cores) if cores else [None]
            for pinned in pinning:
                bench.cores = pinned
                bench.run_dataset(ds, run)
            run += 1
        bench.cores = None
        bench.finish(ds)


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the running tool is killed, the loop FS removed


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stopped)
    args = parse_args(argv)
    if args.report is not None:
        return reprint(args.report, args.save)
    sizes = sizes_of(args)
    runs = args.runs or (1 if args.quick or args.size != "full" or args.profile else 3)
    tools = select_tools(args.tools, args.profile is not None)
    try:
        cores = parse_cores(args.cores)
    except ValueError as exc:
        raise SystemExit(f"--cores: {exc}") from None
    workdir: Path = args.workdir.resolve()
    all_sets = make_all(workdir / "data", args.seed, sizes)
    chosen = [all_sets[name] for name in chosen_names(args)] + own_trees(workdir, args)
    info = machine_info(tools)
    with RestoreFs(workdir, args.restore_fs) as restores:
        info["restores"] = restores.describe
        print(f"strongroom bench: {info}", flush=True)
        bench = Bench(workdir, tools, args.timeout, args.quiet_wait, restores)
        bench.profile = args.profile == "gil"
        max_runs = args.max_runs or (runs if bench.profile else 2 * runs)
        probe = 1 in cores and 2 in cores  # the 1 -> 2 core speedup: the machine's own cap
        rounds = ceiling.measure() if probe else []
        run_all(bench, chosen, runs, max_runs, cores)
        rounds += ceiling.measure() if probe else []
    names = [t.name for t in tools]
    descriptions = {ds.name: ds.describe() for ds in chosen}
    fact = facts(all_sets, sizes)
    head = header(info, descriptions, runs)
    cap = ceiling.summarize(rounds)
    text = render_markdown(bench.measurements, names, head, fact, machine_cpus(info), cap)
    if bench.profile:
        profiles = sorted(bench.logs.glob("gil-*.speedscope.json"))
        text = "Timings under py-spy: not comparable.\n\n" + text
        text += "\n## GIL holders (py-spy record --gil)\n\n" + gilprofile.summarize(profiles)
    settings = {
        "runs": runs,
        "size": "quick" if args.quick else args.size,
        "sizes": dataclasses.asdict(sizes),
        "cores": cores,
        "ceiling_rounds": [[r.alone, r.pair] for r in rounds],
        "profile": args.profile,
        "seed": args.seed,
        "restore_fs": args.restore_fs,
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

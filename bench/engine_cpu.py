"""CPU seconds of strongroom's hot engine paths, for before/after comparisons of one change.

    python bench/engine_cpu.py --src /path/to/checkout/src [--runs 3] [--quick]

Times (CPU = user + system of the command, and wall) a first backup, an unchanged backup and a
restore of the bench tree (20,000 files) and the bench image (2 GiB), each into a fresh local
vault per run.  Run it once with the old ``src`` and once with the new one on an idle machine;
the data sets are the harness's (``bench/datasets.py``), cached in ``--workdir``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datasets import FULL, QUICK, ImageDataset, TreeDataset


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU and wall seconds of one command (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(argv)} failed: {err}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="the src folder of the code to time")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/strongroom-engine-bench"))
    args = p.parse_args()
    sizes = QUICK if args.quick else FULL
    data = args.workdir / "data"
    tree, image = TreeDataset(data, 1, sizes.files), ImageDataset(data, 1, sizes.image)
    for ds in (tree, image):
        ds.ensure()
    ws = args.workdir / "ws"
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env |= {
        "PYTHONPATH": str(args.src.resolve()),
        "STRONGROOM_VAULT": str(ws / "vault"),
        "STRONGROOM_PASSWORD": "bench-password",
        "XDG_CACHE_HOME": str(ws / "cache"),
    }
    exe = [sys.executable, "-m", "strongroom.cli.main"]
    results: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for kind, ds in (("files", tree), ("disk", image)):
            shutil.rmtree(ws, ignore_errors=True)
            ws.mkdir(parents=True)
            timed([*exe, "init"], env)
            backup = [*exe, "backup", kind, str(ds.path), "--source", kind]
            out = ws / "out"
            if kind == "files":
                restore = [*exe, "restore", "files", "latest", "--source", kind]
                restore += ["--target", str(out)]
            else:
                restore = [*exe, "restore", "disk", "latest", "--source", kind]
                restore += ["--to", str(out / "disk.raw")]
            out.mkdir()
            for step, argv in (("first", backup), ("unchanged", backup), ("restore", restore)):
                results.setdefault(f"{ds.name} {step}", []).append(timed(argv, env))
        print(f"run {run + 1} done", file=sys.stderr)
    shutil.rmtree(ws, ignore_errors=True)
    print(f"{'step':<20}{'CPU s (median)':>16}{'wall s (median)':>17}  CPU s of each run")
    for step, got in results.items():
        cpu = [c for c, _ in got]
        wall = [w for _, w in got]
        each = " ".join(f"{c:.2f}" for c in cpu)
        print(f"{step:<20}{statistics.median(cpu):>16.2f}{statistics.median(wall):>17.2f}  {each}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

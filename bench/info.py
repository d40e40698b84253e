"""What a results table says about itself: the machine, the tools' versions, the settings."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from datasets import Dataset, ImageDataset, MiB, Sizes
from tools import Borg, Tool

NOISE_CORES = 0.15  # a sample is noisy when other processes used more than this share of a core
NOISE_FLOOR = 0.2  # seconds of foreign CPU always tolerated


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
        # the interpreter itself: a build without PGO and LTO ran first backups 10-17 % slower
        "python": f"{platform.python_version()} {os.path.realpath(sys.executable)}",
        "strongroom": _output(["git", "-C", str(repo), "describe", "--always", "--dirty"]),
    }
    for tool in tools:
        if tool.name == "restic":
            info["restic"] = _output(["restic", "version"]).split(" compiled")[0]
        elif isinstance(tool, Borg):
            info[tool.name] = _output([tool.exe, "--version"])
    return info


def header(info: dict[str, str], datasets: dict[str, str], runs: int) -> list[str]:
    known = (
        "date",
        "cpu",
        "nproc",
        "memory_gib",
        "os",
        "kernel",
        "python",
        "strongroom",
        "restores",
    )
    peers = ", ".join(f"{k}: {v}" for k, v in info.items() if k not in known)
    lines = [
        f"Date: {info['date']}. Machine: {info['cpu']}, {info['nproc']} cores (nproc), "
        f"{info['memory_gib']} GiB RAM (free -g), {info['os']}, Linux {info['kernel']}. "
        f"strongroom {info['strongroom']} (Python {info['python']}); {peers}. "
        f"Median of {runs} run(s) without noise (a run during which other processes used more "
        f"than {NOISE_CORES} of a core is noisy and repeated, up to twice as many runs). "
        "Cores used = CPU s / wall s; load = 1-minute load average at the start of each "
        "command; steal and iowait: % of all CPU time during it (/proc/stat).",
        f"Restores written to {info.get('restores', 'the workdir')}.",
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

"""``--profile gil``: strongroom's commands under ``py-spy record --gil``, and who holds the GIL.

With ``--gil`` py-spy only keeps samples of the thread holding the GIL, so every sample is
time in which no other Python thread of the process could run: the serial stages.  The
profiles are saved as speedscope JSON (open them in speedscope.app, offline copy or not);
``summarize`` lists the functions that held the GIL most (self: the frame on top of the
stack; total: anywhere on it) and the threads that held it.

    python bench/gilprofile.py PROFILE.speedscope.json...   # the summary of saved profiles
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

PY_SPY = Path(os.environ.get("BENCH_OPT", "/opt/strongroom-bench")) / "venv" / "bin" / "py-spy"
RATE = 200  # samples a second


def wrap(argv: Sequence[str], out: Path) -> list[str]:
    """``argv`` under py-spy, recording GIL holders (subprocesses too) into ``out``."""
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} is missing: run bash bench/setup.sh")
    return [
        str(PY_SPY),
        "record",
        "--gil",
        "--subprocesses",
        "--rate",
        str(RATE),
        "--format",
        "speedscope",
        "--output",
        str(out),
        "--",
        *argv,
    ]


def _frame_name(frame: dict[str, object]) -> str:
    name = str(frame.get("name", "?"))
    file = str(frame.get("file", ""))
    short = "/".join(file.split("/")[-2:]) if file else ""
    return f"{name} ({short}:{frame.get('line', '?')})" if short else name


def tally(doc: dict[str, object]) -> tuple[Counter[str], Counter[str], Counter[str], float]:
    """(self weight by function, total weight by function, weight by thread, all weight).

    Weights are py-spy's: seconds per sample (1 when a profile has none)."""
    shared = doc.get("shared")
    frames = shared.get("frames", []) if isinstance(shared, dict) else []
    names = [_frame_name(f) for f in frames]
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    everything = 0.0
    profiles = doc.get("profiles", [])
    for profile in profiles if isinstance(profiles, list) else []:
        samples = profile.get("samples", [])
        weights = profile.get("weights", [1] * len(samples))
        for stack, weight in zip(samples, weights, strict=False):
            everything += weight
            threads[str(profile.get("name", "?"))] += weight
            if stack:
                own[names[stack[-1]]] += weight
            for name in {names[i] for i in stack}:
                total[name] += weight
    return own, total, threads, everything


def module_of(frame: str) -> str:
    """``name (dir/file.py:line)`` -> ``dir/file.py``; importlib's frames as "imports"."""
    where = frame.rsplit(" (", 1)[-1].rstrip(")").rsplit(":", 1)[0]
    return "imports" if "importlib" in where else where


def summarize(paths: Sequence[Path], top: int = 15) -> str:
    """A markdown summary of the GIL holders over the profiles in ``paths``."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    commands: dict[str, float] = {}
    everything = 0.0
    for path in paths:
        o, t, th, e = tally(json.loads(path.read_text()))
        own += o
        total += t
        threads += th
        everything += e
        label = path.name.removeprefix("gil-").removesuffix(".speedscope.json")
        commands[label] = commands.get(label, 0.0) + e
    if everything == 0:
        return "No GIL samples (py-spy recorded nothing).\n"
    # py-spy weighs each sample by its interval in seconds: the sum is GIL-holding time
    lines = [
        f"GIL held: {everything:,.2f} s over {len(paths)} profile(s), sampled at {RATE}/s.",
        "",
    ]
    modules: Counter[str] = Counter()
    for name, weight in own.items():
        modules[module_of(name)] += weight
    lines += ["GIL held per command (TOOL-DATASET-STEP-RUN-CORES):", "", "| s | command |"]
    lines += [
        "|---:|---|",
        *(f"| {w:.2f} | {n} |" for n, w in sorted(commands.items(), key=lambda nw: -nw[1])),
        "",
    ]
    lines += ["Self time by module (imports: the fixed cost of a command):", ""]
    lines += ["| share | module |", "|---:|---|"]
    lines += [f"| {w / everything:.1%} | {n} |" for n, w in modules.most_common(top)]
    lines.append("")
    for title, counts in (("self (on top)", own), ("total (on the stack)", total)):
        lines += [f"Top GIL holders, {title}:", "", "| share | function |", "|---:|---|"]
        lines += [f"| {w / everything:.1%} | `{n}` |" for n, w in counts.most_common(top)]
        lines.append("")
    lines += ["By thread:", "", "| share | thread |", "|---:|---|"]
    lines += [f"| {w / everything:.1%} | {n} |" for n, w in threads.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(summarize([Path(p) for p in sys.argv[1:]]), end="")

"""Several saved runs of the harness as one: ``harness.py --report A.json --report B.json``.

Why: the machines this runs on change speed from hour to hour (the same command 1.5-1.8x
slower in one full run than an hour later, docs/benchmarks.md, "Session 33"), so the README's
tables are the medians over every run of several full runs, not of one.  Only results of the
same data sets, sizes, seed, tools, core pinning and restore file system merge; the runs are
numbered on from one file to the next, so the machine-state table keeps them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from report import measurements_from_json, to_json

# settings that must agree for samples to be comparable (runs may differ)
_SAME = ("size", "sizes", "seed", "tools", "datasets", "cores", "restore_fs", "profile")


def merge_results(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One results document of ``docs`` (the first's machine and facts, every sample)."""
    if not docs:
        raise SystemExit("no results to merge")
    first = docs[0]
    for k, doc in enumerate(docs[1:], start=2):
        for key in _SAME:
            if doc["settings"].get(key) != first["settings"].get(key):
                raise SystemExit(f"results file {k} ran with other settings ({key}): not merged")
        if doc["facts"] != first["facts"]:
            raise SystemExit(f"results file {k} measured other data (its facts differ): not merged")
    samples: list[dict[str, Any]] = []
    offset = 0
    for doc in docs:
        runs = [int(m["run"]) for m in doc["samples"]]
        samples += [m | {"run": int(m["run"]) + offset} for m in doc["samples"]]
        offset += max(runs, default=-1) + 1
    machine = dict(first["machine"])
    machine["date"] = " and ".join(str(doc["machine"].get("date", "?")) for doc in docs)
    settings = dict(first["settings"])
    settings["runs"] = sum(int(doc["settings"]["runs"]) for doc in docs)
    settings["merged"] = len(docs)
    # the machine's own 1 -> 2 core ceiling (ceiling.py): every run's rounds
    settings["ceiling_rounds"] = [r for d in docs for r in d["settings"].get("ceiling_rounds", [])]
    return to_json(measurements_from_json({"samples": samples}), machine, first["facts"], settings)

"""bench/merge.py and ``harness.py --report A --report B``: several saved full runs reported as
one, medians and targets over all their runs; results of other settings or data refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench._harness import bench_module

_SETTINGS = {
    "runs": 2,
    "size": "full",
    "sizes": {"small": 50000},
    "seed": 1,
    "tools": ["strongroom", "restic"],
    "datasets": {"tree": "20,000 files"},
    "cores": [],
    "restore_fs": "loop",
    "profile": None,
}


def _doc(report: ModuleType, date: str, walls: list[float], ref: float) -> dict[str, Any]:
    rows = []
    for run, wall in enumerate(walls):
        for tool, w in (("strongroom", wall), ("restic", ref)):
            sample = report.Sample(wall=w, cpu=w, max_rss=64 << 20)
            rows.append(report.Measurement("tree: first backup", tool, run, sample, 100 << 20))
    machine = {"date": date, "cpu": "x", "nproc": "2", "memory_gib": "23", "os": "Debian",
               "kernel": "6", "python": "3.11", "strongroom": "abc"}  # fmt: skip
    settings = _SETTINGS | {"runs": len(walls)}
    doc: dict[str, Any] = report.to_json(rows, machine, {"tree_bytes": 1}, settings)
    saved: dict[str, Any] = json.loads(json.dumps(doc))  # as saved
    return saved


@pytest.fixture
def report() -> ModuleType:
    return bench_module("report")


def test_medians_and_targets_are_over_every_run(report: ModuleType) -> None:
    merge = bench_module("merge")
    # alone, the first file's runs miss 0.5x (0.6x) and the second's meet it (0.2x)
    doc = merge.merge_results(
        [_doc(report, "monday", [6.0, 6.0], 10.0), _doc(report, "tuesday", [2.0, 2.0, 5.0], 10.0)]
    )
    assert doc["settings"]["runs"] == 5 and doc["settings"]["merged"] == 2
    assert doc["machine"]["date"] == "monday and tuesday"
    mine = [m for m in doc["samples"] if m["tool"] == "strongroom"]
    assert sorted(m["run"] for m in mine) == [0, 1, 2, 3, 4]  # numbered on, none collide
    median = next(m for m in doc["medians"] if m["tool"] == "strongroom")
    assert median["runs"] == 5 and median["sample"]["wall"] == 5.0  # of 6, 6, 2, 2, 5
    wall = next(c for c in doc["targets"]["tree: first backup"] if c["name"] == "wall")
    assert wall["ratio"] == pytest.approx(0.5) and wall["met"]


@pytest.mark.parametrize("key", ["seed", "tools", "datasets", "sizes", "cores"])
def test_results_of_other_settings_are_refused(report: ModuleType, key: str) -> None:
    merge = bench_module("merge")
    other = _doc(report, "tuesday", [2.0], 10.0)
    other["settings"][key] = "something else"
    with pytest.raises(SystemExit, match=f"other settings \\({key}\\)"):
        merge.merge_results([_doc(report, "monday", [6.0], 10.0), other])


def test_results_of_other_data_are_refused(report: ModuleType) -> None:
    merge = bench_module("merge")
    other = _doc(report, "tuesday", [2.0], 10.0)
    other["facts"] = {"tree_bytes": 2}
    with pytest.raises(SystemExit, match="other data"):
        merge.merge_results([_doc(report, "monday", [6.0], 10.0), other])


def test_the_harness_reports_and_saves_merged_runs(
    report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = bench_module("harness")
    paths = []
    for name, walls in (("a", [6.0, 6.0]), ("b", [2.0, 2.0, 5.0])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_doc(report, name, walls, 10.0)))
        paths += ["--report", str(path)]
    saved = tmp_path / "merged.json"
    assert harness.main([*paths, "--save", str(saved)]) == 0
    printed = capsys.readouterr().out
    assert "Median of 5 run(s)" in printed and "a and b" in printed
    assert json.loads(saved.read_text())["settings"]["runs"] == 5
    assert saved.with_suffix(".md").read_text() == printed.rstrip("\n") + "\n"
    with pytest.raises(SystemExit, match="not a results file"):
        (tmp_path / "bad.json").write_text("{")
        harness.main(["--report", str(tmp_path / "bad.json")])

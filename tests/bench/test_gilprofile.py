"""bench/gilprofile.py: who held the GIL, from py-spy's speedscope output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.gilprofile import summarize, tally, wrap

from bench import gilprofile

DOC: dict[str, object] = {
    "shared": {
        "frames": [
            {"name": "main", "file": "/x/strongroom/cli/main.py", "line": 10},
            {"name": "compress", "file": "/x/strongroom/vault/packs.py", "line": 77},
            {"name": "walk", "file": "/x/strongroom/files/walker.py", "line": 5},
        ]
    },
    "profiles": [
        {"name": "MainThread", "samples": [[0, 1], [0, 1], [0, 2]], "weights": [1, 1, 1]},
        {"name": "reader-1", "samples": [[2]], "weights": [3]},
    ],
}


def test_tally_self_total_and_threads() -> None:
    own, total, threads, everything = tally(DOC)
    assert everything == 6
    assert own["compress (vault/packs.py:77)"] == 2
    assert own["walk (files/walker.py:5)"] == 4
    assert total["main (cli/main.py:10)"] == 3
    assert threads == {"MainThread": 3, "reader-1": 3}


def test_summary_ranks_the_top_holder_first(tmp_path: Path) -> None:
    path = tmp_path / "p.speedscope.json"
    path.write_text(json.dumps(DOC))
    text = summarize([path])
    self_table = text.split("Top GIL holders, self")[1]
    assert self_table.index("walk") < self_table.index("compress")
    assert "| 66.7% | `walk (files/walker.py:5)` |" in text


def test_empty_profile_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text(json.dumps({"shared": {"frames": []}, "profiles": []}))
    assert summarize([path]).startswith("No GIL samples")


def test_wrap_records_gil_holders_as_speedscope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "py-spy"
    fake.touch()
    monkeypatch.setattr(gilprofile, "PY_SPY", fake)
    argv = wrap(["strongroom", "backup"], tmp_path / "o.json")
    assert argv[1:3] == ["record", "--gil"]
    assert argv[argv.index("--format") + 1] == "speedscope"
    assert argv[-3:] == ["--", "strongroom", "backup"]


def test_modules_and_commands(tmp_path: Path) -> None:
    assert gilprofile.module_of("walk (files/walker.py:5)") == "files/walker.py"
    assert gilprofile.module_of("_load (<frozen importlib._bootstrap>:690)") == "imports"
    path = tmp_path / "gil-strongroom-tree-first-0-0.speedscope.json"
    path.write_text(json.dumps(DOC))
    text = summarize([path])
    assert "| 6.00 | strongroom-tree-first-0-0 |" in text
    assert "| 66.7% | files/walker.py |" in text

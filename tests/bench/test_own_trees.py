"""``bench/harness.py --tree PATH``: an administrator's own folder as a data set, copied into
the workdir (the 1 % change edits the copy, never the folder), alone or beside the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench._harness import bench_module


def test_a_folder_becomes_a_data_set_of_its_copy(tmp_path: Path) -> None:
    harness = bench_module("harness")
    mine = tmp_path / "my data"
    (mine / "sub").mkdir(parents=True)
    for i in range(30):
        (mine / "sub" / f"f{i}.txt").write_text(f"file {i}\n" * 200)
    args = harness.parse_args(["--tree", str(mine), "--workdir", str(tmp_path / "w")])
    assert harness.chosen_names(args) == []  # alone: only the given folders
    (tree,) = harness.own_trees(tmp_path / "w", args)
    assert tree.name == "tree-my_data"
    tree.ensure()
    assert tree.path != mine and (tree.path / "sub" / "f3.txt").read_text() == "file 3\n" * 200
    tree.change()
    assert sorted(p.read_bytes() for p in (mine / "sub").iterdir()) == sorted(
        f"file {i}\n".encode() * 200 for i in range(30)
    )
    copied = (tree.path / "sub").iterdir()
    assert any(p.read_bytes() != (mine / "sub" / p.name).read_bytes() for p in copied)
    tree.revert()
    both = harness.parse_args(["--tree", str(mine), "--datasets", "etc,small"])
    assert harness.chosen_names(both) == ["etc", "small"]


def test_a_tree_that_is_not_a_folder_is_a_one_line_error(tmp_path: Path) -> None:
    harness = bench_module("harness")
    args = harness.parse_args(["--tree", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match=r"--tree .*nowhere: not a folder"):
        harness.own_trees(tmp_path / "w", args)

"""bench/datasets_more.py at tiny sizes: deterministic from the seed, cached, change undone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench._harness import bench_module

KiB = 1 << 10
MiB = 1 << 20


@pytest.fixture(scope="module")
def sets() -> ModuleType:
    """bench/datasets_more.py as the harness imports it (its folder on sys.path)."""
    return bench_module("datasets_more")


def digest(path: Path) -> str:
    """One hash over a file or every file, link and folder below a folder."""
    h = hashlib.sha256()
    items = [path] if path.is_file() else sorted(path.rglob("*"))
    for item in items:
        h.update(str(item.relative_to(path.parent)).encode())
        if item.is_symlink():
            h.update(os.readlink(item).encode())
        elif item.is_file():
            h.update(item.read_bytes())
    return h.hexdigest()


def _check(make: Any, tmp_path: Path) -> None:
    first, second = make(tmp_path / "a"), make(tmp_path / "b")
    first.ensure()
    second.ensure()
    original = digest(first.path)
    assert digest(second.path) == original  # same seed, same bytes
    first.change()
    assert digest(first.path) != original
    first.revert()
    assert digest(first.path) == original
    first.change()
    again = make(tmp_path / "a")  # cached; a change a crashed run left behind is undone
    again.ensure()
    assert digest(again.path) == original


def test_zero_runs_image(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.ZeroRunsImage(root, 3, 2 * MiB), tmp_path)
    runs = sets.page_runs(3, 40, 2 * MiB, 512)
    assert sum(length for _o, length, _k, _key in runs) == 2 * MiB
    assert all(length % (4 * KiB) == 0 for _o, length, _k, _key in runs)
    assert any(offset % MiB for offset, *_ in runs)  # not chunk aligned


def test_text_trees_differ_in_compressibility(sets: ModuleType, tmp_path: Path) -> None:
    import zstandard

    ratios = {}
    for style in ("high", "mid", "low"):
        _check(lambda root, s=style: sets.TextTree(root, 1, 1 * MiB, s), tmp_path / style)
        tree = sets.TextTree(tmp_path / style / "a", 1, 1 * MiB, style)
        data = b"".join(p.read_bytes() for p in sorted(tree.path.rglob("*.txt")))
        ratios[style] = len(zstandard.ZstdCompressor(level=1).compress(data)) / len(data)
    assert ratios["high"] < ratios["mid"] < ratios["low"] < 0.7


def test_small_and_big_files(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.SmallFiles(root, 1, 300), tmp_path / "small")
    small = sets.SmallFiles(tmp_path / "small" / "a", 1, 300)
    assert max(p.stat().st_size for p in small.path.rglob("*") if p.is_file()) < 4 * KiB
    _check(lambda root: sets.BigFiles(root, 1, 2 * MiB, 2), tmp_path / "big")


def test_folder_trees_hold_two_small_files_a_folder(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.FolderTree(root, 1, 300), tmp_path / "dirs")
    tree = sets.FolderTree(tmp_path / "dirs" / "a", 1, 300)
    files = [p for p in tree.path.rglob("*") if p.is_file()]
    assert len(files) == 300 and len({p.parent for p in files}) == 150
    assert {len(p.relative_to(tree.path).parts) for p in files} == {4}


def test_flat_files_are_the_small_files_in_one_folder(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.FlatFiles(root, 1, 300), tmp_path / "flat")
    flat = sets.FlatFiles(tmp_path / "flat" / "a", 1, 300)
    small = sets.SmallFiles(tmp_path / "small" / "a", 1, 300)
    flat.ensure()  # cached by _check: nothing generated again
    files = [p for p in flat.path.rglob("*") if p.is_file()]
    assert len(files) == 300 and len({p.parent for p in files}) == 1
    for i in (0, 7, 299):
        assert flat.file(i)[1] == small.file(i)[1]


def test_links_give_each_file_a_symlink_and_a_second_name(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.LinksTree(root, 1, 300), tmp_path / "links")
    tree = sets.LinksTree(tmp_path / "links" / "a", 1, 300)
    entries = list(tree.path.rglob("*"))
    links = [p for p in entries if p.is_symlink()]
    files = [p for p in entries if p.is_file() and not p.is_symlink()]
    assert len(links) == 300 and len(files) == 600
    assert all(p.resolve().is_file() for p in links)  # none dangling
    assert {p.stat().st_nlink for p in files} == {2}
    changed, _ = tree.file(tree.changed_files()[0])
    inode = changed.stat().st_ino
    tree.change()  # rewritten in place: its other name sees it
    other = [p for p in files if p.stat().st_ino == inode and p != changed]
    assert len(other) == 1 and other[0].read_bytes() == changed.read_bytes()
    tree.revert()


def test_copies_hold_the_same_content_in_several_places(sets: ModuleType, tmp_path: Path) -> None:
    _check(lambda root: sets.CopiesTree(root, 1, 500), tmp_path / "copies")
    tree = sets.CopiesTree(tmp_path / "copies" / "a", 1, 500)
    files = [p for p in tree.path.rglob("*") if p.is_file()]
    distinct = {p.read_bytes() for p in files}
    assert len(files) == 500 and 0.45 < len(distinct) / len(files) < 0.7
    assert len({p.parent.parent for p in files}) == 1  # 600 files a package
    assert all(100 <= p.stat().st_size <= 32 * KiB for p in files)


def test_copied_tree_keeps_links_and_caps(sets: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    for i in range(120):
        (source / "d" / f"f{i:03d}").write_bytes(bytes([i]) * (5 * KiB))
    (source / "dangling").symlink_to("../nowhere")
    _check(lambda root: sets.CopiedTree(root, 1, "src", source, None), tmp_path / "copy")
    copied = sets.CopiedTree(tmp_path / "copy" / "a", 1, "src", source, None).path
    assert os.readlink(copied / "dangling") == "../nowhere"
    capped = sets.CopiedTree(tmp_path / "cap", 1, "src", source, 200 * KiB)
    capped.ensure()
    names = sorted(p.name for p in capped.path.rglob("f*"))
    assert 10 * 5 * KiB <= len(names) * 5 * KiB <= 200 * KiB
    assert names != [f"f{i:03d}" for i in range(len(names))]  # a sample, not a sorted prefix

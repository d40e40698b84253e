"""What a restore holds for each file it plans (the plan of a big tree sits in memory next to
the rest of the restore, so its size per file bounds the restore's peak memory), and for each
chunk it writes."""

from __future__ import annotations

import gc
import os
import random
import tracemalloc
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from strongroom.errors import StrongroomError
from strongroom.files import BackupOptions, RestoreOptions, backup_files, restore_files
from strongroom.files.nodes import DIR, FILE, Node, encode_dir
from strongroom.files.plan import Planner
from strongroom.files.tree import TreeReader
from strongroom.storage import LocalBackend
from strongroom.vault import Located, Vault
from tests.conftest import FAST_KDF, PASSPHRASE

Stored = dict[bytes, tuple[list[bytes], bytes]]


class _Trees:
    """Just enough of a vault for a :class:`TreeReader`: tree chunks by id."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored

    def read_tree(self, tree_id: bytes) -> tuple[list[bytes], bytes]:
        return self.stored[tree_id]


def _point(dirs: int, files: int) -> tuple[Node, Stored]:
    """A root holding ``dirs`` folders of ``files`` one-chunk files each, owned by a user."""
    rng = random.Random(1)
    stored: Stored = {}

    def put(nodes: list[Node]) -> bytes:
        tree_id = rng.randbytes(32)
        stored[tree_id] = encode_dir(nodes)
        return tree_id

    def file(i: int) -> Node:
        when = 1_700_000_000_000_000_000 + rng.randrange(10**15)
        return Node(
            name=b"file-%05d.dat" % i,
            kind=FILE,
            mode=0o644,
            uid=1000,
            gid=1000,
            user="alice",
            group="staff",
            mtime_ns=when,
            atime_ns=when + rng.randrange(10**12),
            size=rng.randint(1, 64 << 10),
            chunks=[rng.randbytes(32)],
        )

    folders = [
        Node(
            name=b"folder-%03d" % d,
            kind=DIR,
            mode=0o755,
            uid=1000,
            gid=1000,
            user="alice",
            group="staff",
            subtree=put([file(i) for i in range(files)]),
        )
        for d in range(dirs)
    ]
    return Node(name=b"", kind=DIR, mode=0o755, subtree=put(folders)), stored


def test_a_plan_holds_little_for_each_file() -> None:
    root, stored = _point(dirs=20, files=150)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        trees = TreeReader(cast(Vault, _Trees(stored)))
        plan = Planner(trees, b"/restore/target", "overwrite", b".x", probe=False).build(root, [])
        del trees  # the planner's tree cache goes with it; the plan is what stays
        # Empties CPython's free lists: the tuples of a 20-argument call sit in one (up to 2,000
        # of them, 200 bytes each, however many files) unless an earlier test filled it first.
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(plan.entries) == 20 + 20 * 150
    # About 520 bytes a file on CPython 3.11 (the node, its name, chunk list and id, times
    # and size, the entry): owner names and modes shared, no path or empty list of its own
    # (it was about 890 bytes).
    assert held / (20 * 150) < 650


def _held_after_reading_every_folder(trees: TreeReader, root: Node) -> int:
    """What a reader still holds once each folder was read once and let go (a restore by
    subtrees plans each folder once and keeps only its files' entries until written)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for folder in trees.children(root):
            assert len(trees.children(folder)) == 150
        gc.collect()
        return int(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()


def test_a_reader_without_a_cache_keeps_no_folder_it_read() -> None:
    root, stored = _point(dirs=20, files=150)
    once = _held_after_reading_every_folder(TreeReader(cast(Vault, _Trees(stored)), cache=0), root)
    cached = _held_after_reading_every_folder(TreeReader(cast(Vault, _Trees(stored))), root)
    # the default reader keeps the last 256 folders decoded: here all 3,000 nodes
    assert cached > 3000 * 300
    assert once < 64 << 10


class _Piece(bytearray):
    """A chunk as a read hands it to the writer, but weakly referenceable."""


def test_a_file_s_chunk_is_let_go_before_its_next_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restore writes a chunk, then reads the next: holding the one written while the next
    is fetched, decrypted and decompressed kept up to 4 MiB more in each writing thread."""
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(6).randbytes(12 << 20)  # a dozen chunks or so
    (src / "big.bin").write_bytes(data)
    vault = Vault.init(LocalBackend(tmp_path / "v"), PASSPHRASE, kdf=FAST_KDF)
    backup_files(vault, BackupOptions([str(src)], source="t"))

    planned = Vault.read_planned
    alive_at_next: list[bool] = []

    def read_planned(
        self: Vault, chunks: Sequence[Located], span: int | None = None
    ) -> Iterator[bytes | memoryview | StrongroomError]:
        last: weakref.ref[_Piece] | None = None
        for got in planned(self, chunks, span):
            if last is not None:
                alive_at_next.append(last() is not None)
            box = [_Piece(got) if isinstance(got, bytes) else got]
            del got
            last = weakref.ref(box[0]) if isinstance(box[0], _Piece) else None
            yield box.pop()  # type: ignore[misc]  # a bytearray does what bytes would

    monkeypatch.setattr(Vault, "read_planned", read_planned)
    target = tmp_path / "out"
    point = vault.resolve_point("latest", source="t")
    summary = restore_files(vault, point, RestoreOptions(target, workers=1, processes=0))

    assert summary.errors == []
    assert (target / os.path.relpath(src / "big.bin", "/")).read_bytes() == data
    assert len(alive_at_next) >= 5 and not any(alive_at_next)

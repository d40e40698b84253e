"""Round trips through a real vault on disk, reopened from scratch."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.errors import (
    AmbiguousPoint,
    KeySlotError,
    NotAVault,
    PointNotFound,
    UnsupportedVersion,
    VaultExists,
    WrongPassphrase,
)
from strongroom.storage import LocalBackend, MemoryBackend
from strongroom.vault import (
    PointManifest,
    PruneOptions,
    Vault,
    check_vault,
    prune,
    vault_stats,
)
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.vault.helpers import random_chunks, write_point


def reopen(path: Path, passphrase: str = PASSPHRASE) -> Vault:
    return Vault.open(LocalBackend(path), passphrase)


def test_chunks_and_points_survive_reopen(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    vault = make_vault(LocalBackend(tmp_path / "v"), pack_size=256 * 1024)
    datas = [*random_chunks(1, 40), b"", b"x", os.urandom(3 * 1024 * 1024)]
    written = write_point(vault, datas)
    again = reopen(tmp_path / "v")
    assert [p.point_id for p in again.points()] == [written.point.point_id]
    for cid, data in written.chunks.items():
        assert again.read_chunk(cid) == data
    refs, body = again.read_tree(bytes.fromhex(written.point.manifest.roots[0]))
    assert set(refs) == set(written.chunks) and body == b"body:test"
    assert check_vault(again, read_data=True).ok


def test_dedup_stores_each_chunk_once(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    vault = make_vault(LocalBackend(tmp_path / "v"))
    datas = random_chunks(2, 10)
    write_point(vault, datas)
    before = vault_stats(vault)
    w = vault.writer()
    results = [w.put(d) for d in datas + datas]
    w.flush()
    assert not any(r.new for r in results)
    assert w.stats.chunks_dedup == 20 and w.stats.packs == 0
    again = reopen(tmp_path / "v")
    assert vault_stats(again).chunk_raw_bytes == before.chunk_raw_bytes


def test_stats_count_a_chunk_stored_twice_once(
    tmp_path: Path, make_vault: Callable[..., Vault]
) -> None:
    """Two writers that do not share claims (two processes of a backup before session 25)
    store the same chunk twice: the statistics count it once and report the copy."""
    vault = make_vault(LocalBackend(tmp_path / "v"))
    datas = random_chunks(3, 10)
    first, second = vault.writer(), vault.writer()
    ids = [first.put(d).chunk_id for d in datas]
    for d in datas:
        second.put(d)
    root = vault.put_tree(first, ids, b"body")
    first.flush()
    second.flush()
    vault.save_point(PointManifest(kind="files", source="twice", roots=[root.hex()]))
    s = vault_stats(reopen(tmp_path / "v"))
    data_bytes = sum(map(len, datas))
    assert s.chunks == 11 and s.chunk_raw_bytes > data_bytes  # and the tree
    assert s.extra_copies == 10 and 0 < s.extra_copy_bytes < s.chunk_stored_bytes
    # prune keeps one copy of each when it repacks (what nothing reads is dead)
    again = reopen(tmp_path / "v")
    prune(again, PruneOptions(grace_seconds=0, repack_threshold=0.95))
    after = vault_stats(reopen(tmp_path / "v"))
    assert (after.chunks, after.extra_copies) == (11, 0)
    assert after.chunk_raw_bytes == s.chunk_raw_bytes


def test_incompressible_chunks_are_stored_raw(local_vault: Vault) -> None:
    data = os.urandom(1 << 20)
    w = local_vault.writer()
    cid = w.put(data).chunk_id
    w.flush()
    entry = local_vault.index.lookup(cid)
    assert entry is not None and entry.flags == 0 and entry.length == len(data) + 28
    text = b"compressible " * 80000
    cid2 = w.put(text).chunk_id
    w.flush()
    entry2 = local_vault.index.lookup(cid2)
    assert entry2 is not None and entry2.flags == 1 and entry2.length < len(text) // 10


def test_chunk_ids_are_keyed(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    a = make_vault(LocalBackend(tmp_path / "a"))
    b = make_vault(LocalBackend(tmp_path / "b"))
    assert a.keys.chunk_id(b"same") != b.keys.chunk_id(b"same")


def test_parallel_puts_from_threads(local_vault: Vault) -> None:
    from concurrent.futures import ThreadPoolExecutor

    datas = random_chunks(3, 64, size=32 * 1024) * 2
    w = local_vault.writer()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda d: w.put(d).chunk_id, datas))
    w.flush()
    assert w.stats.chunks_new == 64 and w.stats.chunks_dedup == 64
    assert list(local_vault.reader.read_many(ids)) == datas


def test_wrong_passphrase(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    make_vault(LocalBackend(tmp_path / "v"))
    with pytest.raises(WrongPassphrase):
        reopen(tmp_path / "v", "not it")


def test_not_a_vault_and_exists(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAVault):
        reopen(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config").write_text("hello")
    with pytest.raises(NotAVault):
        reopen(tmp_path / "junk")
    make_vault(LocalBackend(tmp_path / "v"))
    with pytest.raises(VaultExists):
        make_vault(LocalBackend(tmp_path / "v"))


def test_unknown_format_version(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    make_vault(LocalBackend(tmp_path / "v"))
    cfg = tmp_path / "v" / "config"
    cfg.write_text(cfg.read_text().replace('"version": 2', '"version": 7'))
    with pytest.raises(UnsupportedVersion, match=r"version 7.*upgrade strongroom"):
        reopen(tmp_path / "v")


def test_format_version_1_is_refused(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    """Version 1 (pre-release) named objects by SHA-256: refused up front, not misread."""
    make_vault(LocalBackend(tmp_path / "v"))
    cfg = tmp_path / "v" / "config"
    cfg.write_text(cfg.read_text().replace('"version": 2', '"version": 1'))
    with pytest.raises(UnsupportedVersion, match=r"version 1.*older strongroom"):
        reopen(tmp_path / "v")


def test_key_slots(tmp_path: Path, make_vault: Callable[..., Vault]) -> None:
    vault = make_vault(LocalBackend(tmp_path / "v"))
    second = vault.add_key("second", FAST_KDF, label="ops")
    assert {s.slot_id for s in vault.list_keys()} == {vault.slot_id, second}
    other = reopen(tmp_path / "v", "second")
    assert other.slot_id == second and other.keys == vault.keys
    with pytest.raises(KeySlotError):
        other.remove_key(second)
    other.remove_key(vault.slot_id)
    with pytest.raises(WrongPassphrase):
        reopen(tmp_path / "v")
    with pytest.raises(KeySlotError, match="last"):
        other.remove_key(second)
    other.change_passphrase("third", FAST_KDF)
    assert reopen(tmp_path / "v", "third").keys == vault.keys
    with pytest.raises(WrongPassphrase):
        reopen(tmp_path / "v", "second")


def test_resolve_point(local_vault: Vault) -> None:
    points = [
        write_point(local_vault, random_chunks(i, 2), source=f"s{i % 2}").point for i in range(6)
    ]
    assert local_vault.resolve_point(points[3].point_id) == points[3]
    assert local_vault.resolve_point(points[3].point_id[:10]) == points[3]
    assert local_vault.resolve_point("latest", source="s0") == points[4]
    assert local_vault.resolve_point("latest") == points[5]
    with pytest.raises(AmbiguousPoint):
        local_vault.resolve_point("")
    with pytest.raises(PointNotFound):
        local_vault.resolve_point("zz")
    with pytest.raises(PointNotFound):
        local_vault.resolve_point("latest", source="nope")


def test_memory_backend_roundtrip(make_vault: Callable[..., Vault]) -> None:
    backend = MemoryBackend()
    vault = make_vault(backend)
    written = write_point(vault, random_chunks(5, 8))
    again = Vault.open(backend, PASSPHRASE)
    assert all(again.read_chunk(c) == d for c, d in written.chunks.items())


def test_failed_pack_upload_leaves_no_dedup_entry(make_vault: Callable[..., Vault]) -> None:
    from strongroom.errors import PermanentStorageError
    from tests.faults import FaultRule, FaultyBackend

    inner = MemoryBackend()
    vault = make_vault(inner)
    faulty = FaultyBackend(inner)
    broken = Vault.open(faulty, PASSPHRASE)
    faulty.add_rule(FaultRule(op="put", kind="permanent", prefix="data/", times=100))
    datas = random_chunks(6, 4)
    w = broken.writer()
    for d in datas:
        w.put(d)
    with pytest.raises(PermanentStorageError):
        w.flush()
    assert not any(broken.keys.chunk_id(d) in broken.index for d in datas)
    # a later backup with the same handle stores the chunks for real
    w2 = broken.writer()
    faulty.clear_rules()
    assert all(w2.put(d).new for d in datas)
    w2.flush()
    assert check_vault(Vault.open(inner, PASSPHRASE), read_data=True).ok
    del vault

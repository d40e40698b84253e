"""CachingBackend: served from the cache only while the copy's hash matches its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom.errors import ObjectNotFound
from strongroom.storage import CachingBackend, LocalBackend
from strongroom.storage.names import content_digest
from tests.faults import FaultRule, FaultyBackend


def content_name(prefix: str, data: bytes) -> str:
    return f"{prefix}{content_digest(data).hex()}"


@pytest.fixture
def remote(tmp_path: Path) -> FaultyBackend:
    """The 'remote': a local folder behind a FaultyBackend that counts every call."""
    return FaultyBackend(LocalBackend(tmp_path / "remote"))


@pytest.fixture
def caching(remote: FaultyBackend, tmp_path: Path) -> CachingBackend:
    return CachingBackend(remote, tmp_path / "cache")


def test_cached_get_does_not_call_the_remote(
    caching: CachingBackend, remote: FaultyBackend
) -> None:
    data = b"index object"
    name = content_name("index/", data)
    remote.inner.put(name, data)
    assert caching.get(name) == data
    assert caching.get(name) == data
    assert caching.get_range(name, 6, 3) == b"obj"
    assert remote.calls["get"] == 1
    assert remote.calls["get_range"] == 0


def test_put_writes_through_and_caches(caching: CachingBackend, remote: FaultyBackend) -> None:
    data = b"a recovery point"
    name = content_name("points/", data)
    caching.put(name, data)
    assert remote.inner.get(name) == data
    assert caching.get(name) == data
    assert remote.calls["get"] == 0


def test_corrupted_cache_file_is_refetched(
    caching: CachingBackend, remote: FaultyBackend, tmp_path: Path
) -> None:
    data = b"index object" * 100
    name = content_name("index/", data)
    caching.put(name, data)
    cached = tmp_path / "cache" / name
    damaged = bytearray(cached.read_bytes())
    damaged[5] ^= 0x10
    cached.write_bytes(bytes(damaged))
    assert caching.get(name) == data
    assert remote.calls["get"] == 1
    assert cached.read_bytes() == data  # repaired from the remote
    cached.write_bytes(data[:10])  # truncated
    assert caching.get(name) == data
    assert remote.calls["get"] == 2


def test_remote_bytes_that_do_not_match_are_returned_uncached(
    caching: CachingBackend, remote: FaultyBackend, tmp_path: Path
) -> None:
    data = b"index object"
    name = content_name("index/", data)
    remote.inner.put(name, data)
    remote.add_rule(FaultRule(op="get", kind="bitflip", times=1))
    damaged = caching.get(name)
    assert damaged != data  # handed on, so the vault can name the corrupt object
    assert not (tmp_path / "cache" / name).exists()
    assert caching.get(name) == data
    assert (tmp_path / "cache" / name).read_bytes() == data


def test_other_names_pass_through(caching: CachingBackend, remote: FaultyBackend) -> None:
    data = b"pack"
    for name in (content_name("data/ab/", data), "index/not-a-hash"):
        caching.put(name, data)
        assert caching.get(name) == data
        assert caching.get(name) == data
    assert remote.calls["get"] == 4
    assert list(caching.cache.list()) == []


def test_delete_removes_both(caching: CachingBackend, remote: FaultyBackend) -> None:
    data = b"gone soon"
    name = content_name("index/", data)
    caching.put(name, data)
    caching.delete(name)
    with pytest.raises(ObjectNotFound):
        caching.get(name)
    with pytest.raises(ObjectNotFound):
        caching.cache.get(name)
    with pytest.raises(ObjectNotFound):
        caching.delete(name)


def test_list_drops_cached_objects_the_remote_lost(
    caching: CachingBackend, remote: FaultyBackend
) -> None:
    kept, lost, point = b"kept", b"lost", b"point"
    for prefix, data in (("index/", kept), ("index/", lost), ("points/", point)):
        caching.put(content_name(prefix, data), data)
    remote.inner.delete(content_name("index/", lost))  # e.g. pruned by another machine
    remote.inner.delete(content_name("points/", point))

    listing = caching.list("index/")
    next(listing)  # a partial listing proves nothing
    assert len(list(caching.cache.list())) == 3
    del listing

    assert [i.name for i in caching.list("index/")] == [content_name("index/", kept)]
    assert {i.name for i in caching.cache.list()} == {
        content_name("index/", kept),
        content_name("points/", point),  # not covered by that listing
    }
    assert [i.name for i in caching.list("")] == [content_name("index/", kept)]
    assert [i.name for i in caching.cache.list()] == [content_name("index/", kept)]


def test_cache_failures_do_not_fail_operations(remote: FaultyBackend, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    caching = CachingBackend(remote, blocker / "cache")
    data = b"still works"
    name = content_name("index/", data)
    caching.put(name, data)
    assert caching.get(name) == data
    assert [i.name for i in caching.list()] == [name]
    caching.delete(name)

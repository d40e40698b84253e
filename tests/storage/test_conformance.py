"""One behaviour for every backend: the Backend protocol as the vault relies on it."""

from __future__ import annotations

import contextlib
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from strongroom.errors import ObjectNotFound, PermanentStorageError
from strongroom.storage import Backend, ObjectInfo
from strongroom.storage.names import content_digest

MIB = 1024 * 1024
ALL_BYTES = bytes(range(256))


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def names(backend: Backend, prefix: str = "") -> set[str]:
    return {info.name for info in backend.list(prefix)}


def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.describe()


@pytest.mark.parametrize("size", [0, 1, 5 * MIB + 17])
def test_round_trip(backend: Backend, size: int) -> None:
    data = payload(size, seed=size)
    content_name = f"index/{content_digest(data).hex()}"
    backend.put(f"data/rt/{size}", data)
    backend.put(content_name, data)
    assert backend.get(f"data/rt/{size}") == data
    assert backend.get(content_name) == data
    assert backend.get(content_name) == data  # again: a caching backend now serves its copy
    assert backend.stat(f"data/rt/{size}") == ObjectInfo(f"data/rt/{size}", size)


def test_all_byte_values_and_buffer_types(backend: Backend) -> None:
    data = ALL_BYTES * 64
    backend.put("bin/bytes", data)
    backend.put("bin/bytearray", bytearray(data))
    backend.put("bin/memoryview", memoryview(data)[256:])
    assert backend.get("bin/bytes") == data
    assert backend.get("bin/bytearray") == data
    assert backend.get("bin/memoryview") == data[256:]


def test_missing_object(backend: Backend) -> None:
    for call in (
        lambda: backend.get("data/none"),
        lambda: backend.stat("data/none"),
        lambda: backend.get_range("data/none", 0, 10),
        lambda: backend.get_range("data/none", 0, 0),
        lambda: backend.delete("data/none"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            call()
        assert info.value.name == "data/none"


def test_overwrite(backend: Backend) -> None:
    backend.put("locks/a", b"first version")
    backend.put("locks/a", b"second")
    assert backend.get("locks/a") == b"second"
    assert backend.stat("locks/a").size == 6
    assert names(backend, "locks/") == {"locks/a"}


def test_get_range(backend: Backend) -> None:
    """Ranges past the end are cut short; at or past the end they are empty, never an error."""
    data = ALL_BYTES * 4
    backend.put("packs/p", data)
    assert backend.get_range("packs/p", 100, 50) == data[100:150]
    assert backend.get_range("packs/p", 0, 1) == data[:1]
    assert backend.get_range("packs/p", 1000, 100) == data[1000:]
    assert backend.get_range("packs/p", 1023, 1) == data[1023:]
    assert backend.get_range("packs/p", 1024, 1) == b""
    assert backend.get_range("packs/p", 5000, 10) == b""
    assert backend.get_range("packs/p", 10, 0) == b""
    with pytest.raises(PermanentStorageError):
        backend.get_range("packs/p", -1, 10)
    with pytest.raises(PermanentStorageError):
        backend.get_range("packs/p", 0, -1)


def test_get_range_of_empty_object(backend: Backend) -> None:
    backend.put("packs/empty", b"")
    assert backend.get_range("packs/empty", 0, 10) == b""


def test_delete(backend: Backend) -> None:
    backend.put("data/aa/x", b"x")
    backend.put("data/aa/y", b"y")
    backend.delete("data/aa/x")
    with pytest.raises(ObjectNotFound):
        backend.get("data/aa/x")
    with pytest.raises(ObjectNotFound):
        backend.delete("data/aa/x")
    assert names(backend) == {"data/aa/y"}


def test_list_prefixes(backend: Backend) -> None:
    stored = {
        "config": b"c",
        "data/ab/ab01": b"1",
        "data/ab/ab02": b"22",
        "data/abc/x": b"333",
        "data/b0/b001": b"4444",
        "index/i1": b"55555",
        "deep/a/b/c/d/e/f": b"666666",
    }
    for name, data in stored.items():
        backend.put(name, data)
    assert {i.name: i.size for i in backend.list()} == {n: len(d) for n, d in stored.items()}
    assert names(backend, "data/") == {"data/ab/ab01", "data/ab/ab02", "data/abc/x", "data/b0/b001"}
    assert names(backend, "data/ab/") == {"data/ab/ab01", "data/ab/ab02"}
    assert names(backend, "data/ab") == {"data/ab/ab01", "data/ab/ab02", "data/abc/x"}
    assert names(backend, "data/ab/ab0") == {"data/ab/ab01", "data/ab/ab02"}
    assert names(backend, "data/ab/ab01") == {"data/ab/ab01"}
    assert names(backend, "con") == {"config"}
    assert names(backend, "deep/a/b/") == {"deep/a/b/c/d/e/f"}
    assert names(backend, "nothing/") == set()
    assert names(backend, "data/zz") == set()
    assert names(backend, "data/ab/ab01/") == set()


def test_list_many(backend: Backend) -> None:
    expected = {f"data/{i % 7:02x}/{i:05d}" for i in range(300)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: backend.put(n, n.encode()), expected))
    assert names(backend, "data/") == expected
    assert names(backend, "data/03/") == {n for n in expected if n.startswith("data/03/")}
    assert sum(1 for _ in backend.list("data/0")) == 300


@pytest.mark.parametrize(
    "bad", ["", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", ".", ".tmp-1234", "a/.tmp-x"]
)
def test_invalid_names(backend: Backend, bad: str) -> None:
    with pytest.raises(PermanentStorageError):
        backend.put(bad, b"x")
    with pytest.raises(PermanentStorageError):
        backend.get(bad)


def test_concurrent_puts_and_gets(backend: Backend) -> None:
    def work(thread: int) -> None:
        for i in range(12):
            data = payload(1000 + 97 * i, seed=thread * 100 + i)
            backend.put(f"data/t{thread}/{i}", data)
            assert backend.get(f"data/t{thread}/{i}") == data
            other = (thread + 1) % 8
            with contextlib.suppress(ObjectNotFound):  # not written yet by that thread
                backend.get(f"data/t{other}/{i}")

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work, t) for t in range(8)]:
            future.result()
    assert len(names(backend, "data/")) == 96
    for thread in range(8):
        assert backend.get(f"data/t{thread}/11") == payload(1000 + 97 * 11, seed=thread * 100 + 11)

"""Opening a vault while a prune replaces the index: index objects that vanish between the
listing and their read are followed up with a fresh listing, never an error."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from strongroom.errors import IntegrityError
from strongroom.storage import MemoryBackend
from strongroom.storage.backend import Backend, ObjectInfo
from strongroom.vault import Vault, check_vault
from strongroom.vault.forget import soft_delete
from strongroom.vault.prune import PruneOptions, prune
from strongroom.vault.settings import change_settings
from tests.conftest import PASSPHRASE
from tests.vault.helpers import random_chunks, write_point


class HookBeforeIndexGet:
    """Passes everything to ``inner``; runs ``hook`` once, just before the first read of an
    index object (after the opener has listed index/)."""

    def __init__(self, inner: Backend, hook: Callable[[], None]) -> None:
        self.inner = inner
        self.hook: Callable[[], None] | None = hook
        self.index_listings = 0

    def get(self, name: str) -> bytes:
        if name.startswith("index/") and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        return self.inner.get(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(name, offset, length)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put(name, data)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix == "index/":
            self.index_listings += 1
        return self.inner.list(prefix)

    def stat(self, name: str) -> ObjectInfo:
        return self.inner.stat(name)

    def describe(self) -> str:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("strict", [True, False])
def test_open_survives_a_prune_between_list_and_get(
    make_vault: Callable[..., Vault], strict: bool
) -> None:
    inner = MemoryBackend()
    vault = make_vault(inner, pack_size=150_000)
    change_settings(vault, soft_delete_days=0)
    gone = write_point(vault, random_chunks(1, 4), source="gone")
    kept = [write_point(vault, random_chunks(seed, 4), source=f"k{seed}") for seed in (2, 3)]
    soft_delete(vault, gone.point, "test")
    old_index = {i.name for i in inner.list("index/")}
    assert len(old_index) == 3

    def concurrent_prune() -> None:
        pruner = Vault.open(inner, PASSPHRASE)
        report = prune(pruner, PruneOptions(grace_seconds=0, repack_threshold=1.0))
        assert report.index_objects_written and report.points_removed

    racing = HookBeforeIndexGet(inner, concurrent_prune)
    opened = Vault.open(racing, PASSPHRASE, strict=strict)
    assert not opened.problems.index
    assert racing.index_listings >= 2, "the vanished objects were followed up"
    new_index = {i.name for i in inner.list("index/")}
    assert not old_index & new_index, "the prune replaced every index object"
    assert new_index <= opened.index_names
    for w in kept:
        for cid, data in w.chunks.items():
            assert opened.read_chunk(cid) == data
    assert check_vault(Vault.open(inner, PASSPHRASE)).ok


def test_an_index_that_keeps_changing_is_reported(make_vault: Callable[..., Vault]) -> None:
    """A listing that names objects which are always gone again: strict raises, lenient skips
    and reports (with the same name)."""
    inner = MemoryBackend()
    vault = make_vault(inner)
    write_point(vault, random_chunks(1, 2, 4096))

    class Phantom(HookBeforeIndexGet):
        def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
            yield from super().list(prefix)
            if prefix == "index/":
                yield ObjectInfo(f"index/{self.index_listings:064x}", 10, None)

    with pytest.raises(IntegrityError, match="vanished while loading"):
        Vault.open(Phantom(inner, lambda: None), PASSPHRASE)
    warned: list[str] = []
    opened = Vault.open(Phantom(inner, lambda: None), PASSPHRASE, strict=False, warn=warned.append)
    assert len(opened.problems.index) == 1 and "vanished" in warned[0]


def test_a_lazy_open_reads_no_index_until_a_chunk_is_needed(
    make_vault: Callable[..., Vault],
) -> None:
    """Listing points needs no chunk index (issue 19): a lazy open lists and reads no index
    object until the first chunk read, then loads it once and reads as an eager open does."""
    inner = MemoryBackend()
    vault = make_vault(inner)
    written = write_point(vault, random_chunks(1, 2, 4096))
    counted = HookBeforeIndexGet(inner, lambda: None)
    opened = Vault.open(counted, PASSPHRASE, lazy_index=True)
    assert [p.point_id for p in opened.points()] == [written.point.point_id]
    assert counted.index_listings == 0 and counted.hook is not None and not opened.index_loaded
    for cid, data in written.chunks.items():
        assert opened.read_chunk(cid) == data
    assert counted.index_listings == 1 and counted.hook is None
    assert opened.index_names == {i.name for i in inner.list("index/")}


def test_a_lazy_strict_open_reports_a_bad_index_at_first_use(
    make_vault: Callable[..., Vault],
) -> None:
    inner = MemoryBackend()
    vault = make_vault(inner)
    written = write_point(vault, random_chunks(1, 2, 4096))
    inner.put("index/" + "ab" * 32, b"junk")
    opened = Vault.open(inner, PASSPHRASE, lazy_index=True)
    assert opened.points()
    with pytest.raises(IntegrityError):
        opened.read_chunk(next(iter(written.chunks)))

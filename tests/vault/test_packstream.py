"""Streamed packs: same bytes and names as whole packs, bounded memory, clean failures."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from strongroom.errors import StorageError
from strongroom.storage import LocalBackend
from strongroom.storage.localstream import LocalStream
from strongroom.storage.names import TEMP_PREFIX, content_digest
from strongroom.vault import Vault, VaultSettings
from strongroom.vault.check import check_vault
from strongroom.vault.pack import STREAM_WINDOW
from strongroom.vault.packstream import MOST_BUFFERS
from tests.conftest import FAST_KDF, PASSPHRASE

MiB = 1 << 20


def _vault(root: Path, backend: LocalBackend, pack_mib: int = 8) -> Vault:
    settings = VaultSettings(pack_size=pack_mib * MiB)
    Vault.init(LocalBackend(root), PASSPHRASE, kdf=FAST_KDF, settings=settings)
    return Vault.open(backend, PASSPHRASE)


def _stray_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_streamed_packs_are_named_by_their_bytes_and_read_back(tmp_path: Path) -> None:
    vault = _vault(tmp_path, LocalBackend(tmp_path))
    chunks = [os.urandom(700_000) for _ in range(30)]  # 21 MB: two full packs and a tail
    writer = vault.writer()
    ids = [writer.put(c).chunk_id for c in chunks]
    writer.flush()
    writer.close()
    packs = sorted((tmp_path / "data").rglob("*"))
    packs = [p for p in packs if p.is_file()]
    assert len(packs) == 3 and max(p.stat().st_size for p in packs) > 4 * STREAM_WINDOW
    for p in packs:
        assert content_digest(p.read_bytes()).hex() == p.name
    again = Vault.open(LocalBackend(tmp_path), PASSPHRASE)
    assert [again.read_chunk(i) for i in ids] == chunks
    assert check_vault(again, read_data=True).ok
    assert _stray_temp_files(tmp_path) == []


class _FailingStream(LocalStream):
    """A fault we cannot cause on demand: the disk fails on the stream's second write."""

    writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        type(self).writes += 1
        if type(self).writes == 2:
            self.abort()
            raise StorageError("injected: input/output error")
        super().write(data)


class _WrappedStreams(LocalBackend):
    """The local backend, its packs streamed through ``stream`` (a LocalStream subclass)."""

    stream: type[LocalStream] = LocalStream

    def open_stream(self, folder: str) -> LocalStream:
        super().open_stream(folder).abort()  # makes the folder

        def translate(err: OSError, what: str) -> Exception:
            return StorageError(f"{what}: {err}")

        return self.stream(str(self.root / folder), self._publish, translate)


class _FailingBackend(_WrappedStreams):
    stream = _FailingStream


_MEASURE = """
import os, sys
from pathlib import Path
from strongroom.storage import LocalBackend
from strongroom.vault import Vault

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

vault = Vault.open(LocalBackend(Path(sys.argv[1])), sys.argv[2])
writer = vault.writer()
writer.put(os.urandom(1000)); writer.flush()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # restart the peak (VmHWM) here
before = status("VmRSS:")
for _ in range(96):
    writer.put(os.urandom(1 << 20))
writer.flush(); writer.close()
print(status("VmHWM:") - before)
"""


def test_writer_memory_does_not_grow_with_the_pack_size(tmp_path: Path) -> None:
    _vault(tmp_path, LocalBackend(tmp_path), pack_mib=32)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), PASSPHRASE],
        check=True,
        capture_output=True,
        text=True,
    )
    grown_mib = int(out.stdout) / 1024
    # whole 32 MiB packs would need two pack buffers (64 MiB); streamed, a few windows
    assert grown_mib < 24, f"the writer grew by {grown_mib:.0f} MiB"


class _SlowStream(LocalStream):
    """A disk that falls behind (a fault we cannot cause on demand): each write waits until
    the test lets it go."""

    gate = threading.Semaphore(0)
    started = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        type(self).started += 1
        type(self).gate.acquire()
        super().write(data)


class _SlowBackend(_WrappedStreams):
    stream = _SlowStream


def test_a_builder_fills_on_while_the_disk_is_behind_and_keeps_the_bytes_in_order(
    tmp_path: Path,
) -> None:
    """With the first segment's write held, the writer queues three segments and fills a
    fourth buffer instead of waiting under its pack lock; the pack is still its bytes in
    order (named by them, every chunk read back)."""
    _SlowStream.gate, _SlowStream.started = threading.Semaphore(0), 0  # this test's alone
    vault = _vault(tmp_path, _SlowBackend(tmp_path), pack_mib=16)
    writer = vault.writer()
    chunks = [os.urandom(STREAM_WINDOW) for _ in range(4 * (MOST_BUFFERS - 1))]
    ids: list[bytes] = []

    def put_all() -> None:
        ids.extend(writer.put(c).chunk_id for c in chunks[: MOST_BUFFERS - 1])

    filler = threading.Thread(target=put_all, daemon=True)
    filler.start()
    try:
        filler.join(timeout=10)
        # three windows went out (one write started, two queued behind it) without a wait
        assert not filler.is_alive(), "the writer waited for the disk with buffers to spare"
        for _ in range(1000):  # the first write starts in the upload pool, in its own time
            if _SlowStream.started:
                break
            time.sleep(0.01)
        assert len(ids) == MOST_BUFFERS - 1 and _SlowStream.started == 1
    finally:
        for _ in range(1000):  # let every write go, as the disk catches up
            _SlowStream.gate.release()
    ids += [writer.put(c).chunk_id for c in chunks[MOST_BUFFERS - 1 :]]
    writer.flush()
    writer.close()
    packs = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert packs and all(content_digest(p.read_bytes()).hex() == p.name for p in packs)
    again = Vault.open(LocalBackend(tmp_path), PASSPHRASE)
    assert [again.read_chunk(i) for i in ids] == chunks
    assert check_vault(again, read_data=True).ok


class _HeldCommit(LocalStream):
    """A disk whose flush is slow (a fault we cannot cause on demand): the first pack's
    commit waits until the test lets it go; the bytes written are counted."""

    release = threading.Event()
    written = 0
    commits = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        type(self).written += len(memoryview(data))

    def commit(self, name: str) -> None:
        type(self).commits += 1
        if type(self).commits == 1:
            assert type(self).release.wait(30)
        super().commit(name)


class _HeldCommitBackend(_WrappedStreams):
    stream = _HeldCommit


def test_the_next_pack_is_written_while_the_last_one_is_made_durable(tmp_path: Path) -> None:
    """The upload thread hands a written pack to the commit thread: while the first pack's
    fsync hangs, the second pack's bytes still go to disk, no chunk of the first is indexed
    before its commit, and flush waits for both."""
    _HeldCommit.release, _HeldCommit.written, _HeldCommit.commits = threading.Event(), 0, 0
    vault = _vault(tmp_path, _HeldCommitBackend(tmp_path), pack_mib=8)
    writer = vault.writer()
    first = [os.urandom(1 << 20) for _ in range(9)]  # a pack of 9 MiB: sealed at 8
    ids = [writer.put(c).chunk_id for c in first]
    for _ in range(1000):
        if _HeldCommit.commits:
            break
        time.sleep(0.01)
    assert _HeldCommit.commits == 1
    before = _HeldCommit.written
    second = [os.urandom(1 << 20) for _ in range(4)]
    ids += [writer.put(c).chunk_id for c in second]
    for _ in range(1000):  # the second pack's bytes go to disk meanwhile (all but a window)
        if _HeldCommit.written >= before + 4 * MiB - STREAM_WINDOW:
            break
        time.sleep(0.01)
    assert _HeldCommit.written >= before + 4 * MiB - STREAM_WINDOW
    assert len(vault.index) == 0 and not any((tmp_path / "data").rglob("??/*"))
    flushed = threading.Thread(target=writer.flush)
    flushed.start()
    time.sleep(0.3)
    assert flushed.is_alive(), "flush returned before the first pack was durable"
    _HeldCommit.release.set()
    flushed.join(30)
    writer.close()
    assert not flushed.is_alive() and _HeldCommit.commits == 2
    again = Vault.open(LocalBackend(tmp_path), PASSPHRASE)
    assert [again.read_chunk(i) for i in ids] == first + second
    assert check_vault(again, read_data=True).ok
    assert _stray_temp_files(tmp_path) == []


class _FailingCommit(LocalStream):
    """The disk fails the pack's fsync (a fault we cannot cause on demand)."""

    def commit(self, name: str) -> None:
        self.abort()
        raise StorageError("injected: fsync failed")


class _FailingCommitBackend(_WrappedStreams):
    stream = _FailingCommit


@pytest.mark.parametrize(
    ("backend", "error"),
    [(_FailingBackend, "injected"), (_FailingCommitBackend, "fsync failed")],
    ids=["write", "commit"],
)
def test_a_failed_stream_write_or_commit_fails_the_backup_and_leaves_nothing(
    tmp_path: Path, backend: type[_WrappedStreams], error: str
) -> None:
    _FailingStream.writes = 0
    vault = _vault(tmp_path, backend(tmp_path))
    writer = vault.writer()
    with pytest.raises(StorageError, match=error):
        for _ in range(40):
            writer.put(os.urandom(500_000))
        writer.flush()
    writer.close()
    assert _stray_temp_files(tmp_path) == []
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))
    assert len(vault.index) == 0, "nothing of a lost pack may be indexed"


def test_closing_with_a_commit_queued_removes_its_temporary_file(tmp_path: Path) -> None:
    """An interrupt: close() without flush while the first commit hangs and the second waits
    behind it; the second never runs, and its written temporary file is removed."""
    _HeldCommit.release, _HeldCommit.written, _HeldCommit.commits = threading.Event(), 0, 0
    vault = _vault(tmp_path, _HeldCommitBackend(tmp_path), pack_mib=8)
    writer = vault.writer()
    for _ in range(18):  # two packs sealed
        writer.put(os.urandom(1 << 20))
    for _ in range(1000):
        if _HeldCommit.commits:
            break
        time.sleep(0.01)
    closing = threading.Thread(target=writer.close)
    closing.start()
    time.sleep(0.3)
    _HeldCommit.release.set()
    closing.join(30)
    assert not closing.is_alive()
    assert _stray_temp_files(tmp_path) == []


def test_commits_falling_behind_hold_up_the_writer_not_a_queue(tmp_path: Path) -> None:
    """With the first commit held, the writer stops taking chunks after a few packs: the
    packs written and waiting for their commit (temporary files) stay bounded."""
    _HeldCommit.release, _HeldCommit.written, _HeldCommit.commits = threading.Event(), 0, 0
    vault = _vault(tmp_path, _HeldCommitBackend(tmp_path), pack_mib=8)
    writer = vault.writer()
    filler = threading.Thread(
        target=lambda: [writer.put(os.urandom(1 << 20)) for _ in range(9 * 12)], daemon=True
    )
    filler.start()
    filler.join(5)
    try:
        assert filler.is_alive(), "twelve packs went out while the first commit hung"
        # those waiting for their commit, and at most one open stream per builder
        assert len(_stray_temp_files(tmp_path)) <= 4 + 2
    finally:
        _HeldCommit.release.set()
    filler.join(60)
    writer.flush()
    writer.close()
    assert not filler.is_alive() and _HeldCommit.commits >= 12
    assert _stray_temp_files(tmp_path) == []

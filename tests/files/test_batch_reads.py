"""A storage that reads many ranges in one call (a served vault) gets a run's spans in one
batch; when the batch fails, each span is fetched with a read of its own (and a chunk that fails
there alone, as without batches)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from strongroom.files import BackupOptions, backup_files
from strongroom.storage import LocalBackend
from strongroom.storage.backend import BackendCapabilities
from strongroom.storage.batch import Range
from strongroom.vault import Vault
from strongroom.vault.reader import Located
from tests.conftest import PASSPHRASE
from tests.faults import FaultRule, FaultyBackend
from tests.files.test_restore_pipeline import _place, _small_tree


class Batching(FaultyBackend):
    """A local vault that offers batch reads, each range through the fault rules."""

    batches = 0

    @property
    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(batch_reads=True)

    def get_ranges(self, ranges: Sequence[Range]) -> list[memoryview]:
        self.batches += 1
        return [memoryview(self.get_range(*r)) for r in ranges]


def _setup(
    tmp_path: Path, vault: Vault, vault_dir: Path
) -> tuple[Batching, Vault, dict[bytes, bytes], list[Located]]:
    files = _small_tree(tmp_path / "src", 60)
    backup_files(vault, BackupOptions([str(tmp_path / "src")], source="t"))
    batching = Batching(LocalBackend(vault_dir), seed=3)
    other = Vault.open(batching, PASSPHRASE)
    by_id = {other.keys.chunk_id(data): data for data in files.values()}
    located = sorted(other.reader.locate(by_id), key=_place)
    batching.reset_counters()
    return batching, other, by_id, located


def test_a_runs_spans_come_in_one_batch(tmp_path: Path, vault: Vault, vault_dir: Path) -> None:
    batching, other, by_id, located = _setup(tmp_path, vault, vault_dir)
    got = list(other.reader.read_run(located, span=64 << 10))  # many spans of 64 KiB
    assert got == [by_id[cid] for cid, _ in located]
    assert batching.batches == 1
    assert batching.calls["get_range"] > 4  # the batch's ranges: one per span


def test_a_failed_batch_reads_each_chunk_alone(
    tmp_path: Path, vault: Vault, vault_dir: Path
) -> None:
    batching, other, by_id, located = _setup(tmp_path, vault, vault_dir)
    batching.add_rule(FaultRule(op="get_range", kind="permanent", prefix="data/", times=1))
    got = list(other.reader.read_run(located, span=64 << 10))
    assert got == [by_id[cid] for cid, _ in located]
    assert batching.batches == 1
    # the failed batch's first range, then each span with a read of its own
    assert 2 < batching.calls["get_range"] < len(located)

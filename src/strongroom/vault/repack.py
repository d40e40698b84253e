"""Prune's writing side: copy live chunks out of wasteful packs, then write the new index.

Repacking reads each chosen pack whole (verifying its BLAKE3 name), decrypts and verifies
every live chunk, and stores it again through a :class:`ChunkWriter` whose index only records
(so nothing is deduplicated away) into new packs with their own index objects.  A live chunk
that fails verification stops prune before anything is deleted.

The new index lists every pack that is kept, each with all of its rows (a pack record always
lists the pack's whole header), in objects of bounded size; the last one names every index
object it replaces (``supersedes``), which are deleted only after it is durable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strongroom.errors import IntegrityError, RepairNeeded
from strongroom.storage.names import content_digest
from strongroom.vault.envelope import read_checked
from strongroom.vault.gcmark import Progress
from strongroom.vault.index import ChunkIndex, PackRecord, encode_index
from strongroom.vault.pack import BlobDecoder, pack_name
from strongroom.vault.pruneplan import PacksPlan, PruneOptions
from strongroom.vault.vault import Vault
from strongroom.vault.writer import ChunkWriter, write_index_object


class RecordOnlyIndex(ChunkIndex):
    """The repack writer's index: stores nothing, so every chunk put is written anew."""

    def add_pack(
        self, pack_id: bytes, salt: bytes, entries: np.ndarray, *, bulk: bool = False
    ) -> None:
        return None

    def __contains__(self, chunk_id: object) -> bool:
        return False


def _whole_pack(vault: Vault, pack_id: bytes) -> bytes:
    name = pack_name(pack_id)

    def verified(data: bytes) -> bytes:
        if content_digest(data) != pack_id:
            raise IntegrityError(f"{name}: content does not match its name (corrupted)", name=name)
        return data

    return read_checked(vault.backend, name, verified)


def repack(vault: Vault, plan: PacksPlan, progress: Progress | None = None) -> tuple[int, int]:
    """Store the live chunks of ``plan.repack`` packs again; (packs written, bytes written)."""
    if not plan.repack:
        return 0, 0
    s = vault.config.settings
    writer = ChunkWriter(
        vault.backend,
        vault.keys,
        vault.vault_id,
        RecordOnlyIndex(),
        pack_size=s.pack_size,
        compression_level=s.compression_level,
        on_index_written=vault.index_names.add,
    )
    try:
        for done, pos in enumerate(plan.repack, 1):
            _copy_live(vault, plan, pos, writer)
            if progress:
                progress("repack", done, len(plan.repack))
        writer.flush()
    except IntegrityError as exc:
        raise RepairNeeded(
            f"{exc}; prune stopped before deleting anything (run `strongroom check --read-data`)"
        ) from None
    finally:
        writer.close()
    return writer.stats.packs, writer.stats.stored_new


def _copy_live(vault: Vault, plan: PacksPlan, pos: int, writer: ChunkWriter) -> None:
    index = vault.index
    pack_id = index.pack_ids[pos]
    start, end = int(plan.table.start[pos]), int(plan.table.end[pos])
    rows = np.arange(start, end)[plan.live[start:end]]
    entries = index.entries_at(rows)
    data = memoryview(_whole_pack(vault, pack_id))
    cipher = vault.keys.pack_cipher(index.pack_salts[pos])
    decoder = BlobDecoder(vault.keys)
    where = pack_name(pack_id)
    for e in entries:
        cid = e["id"].tobytes()
        off, length = int(e["offset"]), int(e["length"])
        plain = decoder.decode(
            cipher,
            data[off : off + length],
            cid,
            int(e["type"]),
            int(e["flags"]),
            int(e["raw"]),
            where,
        )
        writer.put(plain, int(e["type"]), chunk_id=cid)


def write_new_index(
    vault: Vault, plan: PacksPlan, supersedes: Sequence[str], opts: PruneOptions
) -> list[str]:
    """Index objects for every kept pack; the last one supersedes the old ones."""
    index = vault.index
    written: list[str] = []
    records: list[PackRecord] = []
    count = 0
    for pos in np.flatnonzero(plan.keep):
        start, end = int(plan.table.start[pos]), int(plan.table.end[pos])
        if end <= start:
            continue
        entries = index.entries_at(np.arange(start, end))
        records.append(PackRecord(index.pack_ids[pos], index.pack_salts[pos], entries))
        count += end - start
        if count >= opts.entries_per_index:
            written.append(_write(vault, records, ()))
            records, count = [], 0
    old = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name in sorted(supersedes)]
    if records or old:
        written.append(_write(vault, records, old))
    return written


def _write(vault: Vault, records: list[PackRecord], supersedes: Sequence[bytes]) -> str:
    name = write_index_object(
        vault.backend, vault.keys, vault.vault_id, encode_index(records, supersedes)
    )
    vault.index_names.add(name)
    return name

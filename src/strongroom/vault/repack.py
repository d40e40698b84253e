"""Prune's writing side: copy live chunks out of wasteful packs, then write the new index.

Repacking reads each chosen pack whole (verifying its BLAKE3 name), decrypts and verifies
every live chunk, and stores it again through a :class:`ChunkWriter` whose index only records
(so nothing is deduplicated away) into new packs with their own index objects.  A live chunk
that fails verification stops prune before anything is deleted.

The new index lists every pack that is kept, each with all of its rows (a pack record always
lists the pack's whole header), in objects of bounded size; the last one names every index
object it replaces (``supersedes``), which are deleted only after it is durable.

On a vault server, packs are written and indexed per set of sources the server recorded for
the old packs (:class:`_SourcesOf`), and each new object names its set, so tokens scoped to
sources can still read their data after prune (``docs/server.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from strongroom.errors import IntegrityError, RepairNeeded
from strongroom.storage.names import content_digest
from strongroom.storage.served import pack_sources, storing_for
from strongroom.vault.entries import Entries
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
        self, pack_id: bytes, salt: bytes, entries: Entries, *, bulk: bool = False
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
    sources = _SourcesOf(vault)
    try:
        done = 0
        for group, positions in sources.groups(plan.repack):
            with storing_for(group):  # a served vault records these for the new objects
                for pos in positions:
                    _copy_live(vault, plan, pos, writer)
                    done += 1
                    if progress:
                        progress("repack", done, len(plan.repack))
                writer.flush()  # no new pack mixes chunks of packs of other sources
    except IntegrityError as exc:
        raise RepairNeeded(
            f"{exc}; prune stopped before deleting anything (run `strongroom check --read-data`)"
        ) from None
    finally:
        writer.close()
    return writer.stats.packs, writer.stats.stored_new


class _SourcesOf:
    """The sources a vault server recorded for each pack (none for other backends): prune
    writes new packs and index objects per set of sources, so that each stays readable by
    the scoped tokens that could read the old ones, and by no other."""

    def __init__(self, vault: Vault) -> None:
        self._index = vault.index
        self._of = pack_sources(vault.backend)

    def of(self, pos: int) -> tuple[str, ...]:
        return self._of.get(pack_name(self._index.pack_ids[pos]), ())

    def groups(
        self, positions: Sequence[int] | np.ndarray
    ) -> list[tuple[tuple[str, ...], Sequence[int] | np.ndarray]]:
        """``positions`` by their packs' sources, in their order within each group."""
        if not self._of:  # nothing recorded (not a served vault): one group, no copy
            return [((), positions)] if len(positions) else []
        found: dict[tuple[str, ...], list[int]] = {}
        for pos in positions:
            found.setdefault(self.of(int(pos)), []).append(int(pos))
        return [(group, members) for group, members in found.items()]


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
    for cid, ctype, flags, _, off, length, raw in entries.rows():
        plain = decoder.decode(cipher, data[off : off + length], cid, ctype, flags, raw, where)
        writer.put(plain, ctype, chunk_id=cid)


def write_new_index(
    vault: Vault, plan: PacksPlan, supersedes: Sequence[str], opts: PruneOptions
) -> list[str]:
    """Index objects for every kept pack; the last one supersedes the old ones."""
    index = vault.index
    written: list[str] = []
    sources = _SourcesOf(vault)
    groups = sources.groups(np.flatnonzero(plan.keep))
    old = [bytes.fromhex(name.rsplit("/", 1)[-1]) for name in sorted(supersedes)]
    for n, (group, positions) in enumerate(groups, 1):
        records: list[PackRecord] = []
        count = 0
        with storing_for(group):
            for pos in positions:
                start, end = int(plan.table.start[pos]), int(plan.table.end[pos])
                if end <= start:
                    continue
                entries = index.entries_at(np.arange(start, end))
                records.append(PackRecord(index.pack_ids[pos], index.pack_salts[pos], entries))
                count += end - start
                if count >= opts.entries_per_index:
                    written.append(_write(vault, records, ()))
                    records, count = [], 0
            last = n == len(groups)
            if records or (last and old):  # the last object supersedes the old ones
                written.append(_write(vault, records, old if last else ()))
    if not groups and old:
        written.append(_write(vault, [], old))
    return written


def _write(vault: Vault, records: list[PackRecord], supersedes: Sequence[bytes]) -> str:
    name = write_index_object(
        vault.backend, vault.keys, vault.vault_id, encode_index(records, supersedes)
    )
    vault.index_names.add(name)
    return name

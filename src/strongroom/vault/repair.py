"""``check --repair``: rebuild the index from the packs themselves, keep everything intact.

Under the exclusive lock:

1. every object under ``data/`` is read whole.  A pack whose bytes match its name gives its
   entries from its authenticated header, whether or not an index listed it (packs left by an
   interrupted backup are indexed again).  A pack that does not match its name (bit rot, a
   truncated header, a zero-length object) is *salvaged*: every chunk that still decrypts and
   verifies (located by its header, or by the old index when the header is gone) is stored
   again in a new pack; the damaged pack is removed afterwards;
2. the new index is written (the last object superseding every old index object, readable or
   not), then the old index objects are deleted, then the damaged packs;
3. recovery point objects and tombstones that fail authentication cannot be repaired and are
   removed; tombstones of missing points too; a genuine point under a wrong name is stored
   under its right name;
4. every recovery point is checked against the new index; points that lost chunks are
   reported, never deleted (restore what remains, or forget them).

Before all this, ``config`` and the key slots are rewritten from their good copies, and
copies missing in vaults made before they existed are written
(:mod:`strongroom.vault.copies`).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import field

import numpy as np

from strongroom import failpoints
from strongroom.errors import IntegrityError, MisnamedObject, ObjectNotFound
from strongroom.records import dataclass
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.names import content_digest
from strongroom.vault.check import check_vault
from strongroom.vault.copies import repair_copies
from strongroom.vault.entries import Entries
from strongroom.vault.envelope import object_name_hash
from strongroom.vault.gcmark import Progress, pack_runs
from strongroom.vault.index import PackRecord, encode_index
from strongroom.vault.pack import BlobDecoder, pack_name, read_pack_header
from strongroom.vault.points import POINTS_PREFIX
from strongroom.vault.pruneplan import list_packs
from strongroom.vault.repack import RecordOnlyIndex
from strongroom.vault.tombstones import DELETED_PREFIX
from strongroom.vault.vault import Vault
from strongroom.vault.writer import INDEX_PREFIX, ChunkWriter, write_index_object

_ENTRIES_PER_INDEX = 1 << 15
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class RepairReport:
    packs_read: int = 0
    packs_indexed: int = 0
    packs_newly_indexed: list[str] = field(default_factory=list)
    packs_missing: list[str] = field(default_factory=list)
    packs_removed: list[str] = field(default_factory=list)
    chunks_salvaged: int = 0
    chunks_lost: int = 0
    entries_dropped: int = 0
    index_objects_replaced: int = 0
    index_objects_written: int = 0
    objects_removed: list[str] = field(default_factory=list)
    damaged_points: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.actions.append(text)


def repair(vault: Vault, progress: Progress | None = None) -> RepairReport:
    """Rebuild ``vault``'s index and drop what cannot be repaired; see the module docstring."""
    with vault.lock(exclusive=True):
        vault.remove_stale_locks()
        vault.reload_index()
        vault.catalog.reload()
        vault.problems.points.clear()
        vault.problems.tombstones.clear()
        report = RepairReport()
        repair_copies(vault, report.note)
        old_index = sorted(info.name for info in vault.backend.list(INDEX_PREFIX))
        rebuild = _Rebuild(vault, report)
        packs = list_packs(vault)
        for done, info in enumerate(packs.values(), 1):
            rebuild.pack(info)
            if progress:
                progress("repair", done, len(packs))
        rebuild.missing_packs(set(packs))
        rebuild.finish(old_index)
        failpoints.hit("repair-after-index")
        _delete_all(vault, old_index)
        _delete_all(vault, report.packs_removed)
        report.index_objects_replaced = len(old_index)
        _remove_unreadable(vault, report)
        vault.reload_index()
        vault.catalog.reload()
        after = check_vault(vault)
        report.damaged_points = {pid: len(c) for pid, c in after.affected_points.items()}
    return report


def _delete_all(vault: Vault, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(ObjectNotFound):
            vault.backend.delete(name)


def _remove_unreadable(vault: Vault, report: RepairReport) -> None:
    """Point objects and tombstones that fail authentication, and tombstones of no point."""
    points = vault.points(strict=False, include_deleted=True)
    bad = [exc for exc in vault.problems.points + vault.problems.tombstones if exc.name]
    for exc in bad:
        assert exc.name is not None
        if isinstance(exc, MisnamedObject):
            _rename_point(vault, exc.name, report)
            continue
        _delete_all(vault, [exc.name])
        report.objects_removed.append(exc.name)
        report.note(f"removed {exc.name}: cannot be repaired ({exc})")
    known = {p.point_id for p in points}
    for point_id in vault.tombstones():
        if point_id not in known:
            _delete_all(vault, [DELETED_PREFIX + point_id])
            report.objects_removed.append(DELETED_PREFIX + point_id)
            report.note(f"removed the tombstone of missing point {point_id[:12]}")
    vault.problems.points.clear()
    vault.problems.tombstones.clear()


def _rename_point(vault: Vault, name: str, report: RepairReport) -> None:
    """A genuine point under a wrong name: store it under its content's name (the same
    bytes, if that point exists already), then remove the misnamed copy."""
    stored = vault.backend.get(name)
    right = POINTS_PREFIX + object_name_hash(stored)
    vault.catalog.load_point_bytes(right, stored)  # verifies it once more under the new name
    vault.backend.put(right, stored)
    _delete_all(vault, [name])
    report.objects_removed.append(name)
    report.note(f"stored the genuine recovery point {name} under its right name {right}")


class _Rebuild:
    def __init__(self, vault: Vault, report: RepairReport) -> None:
        self.vault, self.report = vault, report
        self.index = vault.index
        self.start, self.end = pack_runs(vault.index)
        self.records: list[PackRecord] = []
        self.count = 0
        self._salvager: ChunkWriter | None = None

    def _old_entries(self, pack_id: bytes) -> Entries | None:
        pos = self.index.position_of(pack_id)
        if pos is None:
            return None
        return self.index.entries_at(np.arange(self.start[pos], self.end[pos]))

    def pack(self, info: ObjectInfo) -> None:
        pack_id = bytes.fromhex(info.name.rsplit("/", 1)[-1])
        self.report.packs_read += 1
        data = self._read(info.name, pack_id)
        old = self._old_entries(pack_id)
        if not data:
            why = "zero-length"
        elif content_digest(data) != pack_id:
            why = "damaged (content does not match its name)"
        else:
            try:
                contents = read_pack_header(self.vault.keys, data, info.name)
            except IntegrityError as exc:
                why = f"unreadable ({exc})"
            else:
                self._keep(pack_id, contents.salt, contents.entries, old)
                return
        self._salvage(info.name, data, old, why)

    def _read(self, name: str, pack_id: bytes) -> bytes:
        data = self.vault.backend.get(name)
        if content_digest(data) != pack_id:
            data = self.vault.backend.get(name)  # a flipped bit in transit: once more
        return data

    def _keep(self, pack_id: bytes, salt: bytes, entries: Entries, old: Entries | None) -> None:
        name = pack_name(pack_id)
        if old is None:
            self.report.packs_newly_indexed.append(name)
            self.report.note(f"indexed {name} ({len(entries)} chunks; it was in no index)")
        else:
            extra = set(old.ids()) - set(entries.ids())
            if extra:
                self.report.entries_dropped += len(extra)
                self.report.note(
                    f"dropped {len(extra)} index entr(ies) for {name}: the pack does not hold them"
                )
        self.records.append(PackRecord(pack_id, salt, entries))
        self.report.packs_indexed += 1
        self.count += len(entries)
        if self.count >= _ENTRIES_PER_INDEX:
            self._write(())

    def _salvage(self, name: str, data: bytes, old: Entries | None, why: str) -> None:
        """Store every chunk of a damaged pack that still verifies; remove the pack later."""
        entries, salt = self._locate(name, data, old)
        kept = lost = 0
        if entries is not None and salt is not None:
            cipher = self.vault.keys.pack_cipher(salt)
            decoder = BlobDecoder(self.vault.keys)
            view = memoryview(data)
            for cid, ctype, flags, _, off, length, raw in entries.rows():
                try:
                    plain = decoder.decode(
                        cipher, view[off : off + length], cid, ctype, flags, raw, name
                    )
                except IntegrityError:
                    lost += 1
                    continue
                self._salvage_writer().put(plain, ctype, chunk_id=cid)
                kept += 1
        self.report.chunks_salvaged += kept
        self.report.chunks_lost += lost
        self.report.packs_removed.append(name)
        self.report.note(
            f"{name} is {why}: {kept} chunk(s) salvaged into new packs, {lost} lost; removed"
        )

    def _locate(
        self, name: str, data: bytes, old: Entries | None
    ) -> tuple[Entries | None, bytes | None]:
        """The damaged pack's entries: its header if it still opens, else the old index."""
        with contextlib.suppress(IntegrityError):
            contents = read_pack_header(self.vault.keys, data, name)
            return contents.entries, contents.salt
        if old is None:
            return None, None
        pos = self.index.position_of(bytes.fromhex(name.rsplit("/", 1)[-1]))
        assert pos is not None
        return old, self.index.pack_salts[pos]

    def _salvage_writer(self) -> ChunkWriter:
        if self._salvager is None:
            s = self.vault.config.settings
            self._salvager = ChunkWriter(
                self.vault.backend,
                self.vault.keys,
                self.vault.vault_id,
                RecordOnlyIndex(),
                pack_size=s.pack_size,
                compression_level=s.compression_level,
            )
        return self._salvager

    def missing_packs(self, present: set[bytes]) -> None:
        for pos, pack_id in enumerate(self.index.pack_ids):
            if pack_id not in present:
                name = pack_name(pack_id)
                rows = int(self.end[pos] - self.start[pos])
                self.report.packs_missing.append(name)
                self.report.entries_dropped += rows
                self.report.note(f"{name} is missing: dropped its {rows} index entr(ies)")

    def finish(self, old_index: list[str]) -> None:
        if self._salvager is not None:
            try:
                self._salvager.flush()
                self.report.index_objects_written += self._salvager.stats.index_objects
            finally:
                self._salvager.close()
        names = [n.rsplit("/", 1)[-1] for n in old_index]
        if self.records or old_index:
            self._write([bytes.fromhex(n) for n in names if _HEX64.match(n)])

    def _write(self, supersedes: list[bytes] | tuple[()]) -> None:
        write_index_object(
            self.vault.backend,
            self.vault.keys,
            self.vault.vault_id,
            encode_index(self.records, supersedes),
        )
        self.report.index_objects_written += 1
        self.records, self.count = [], 0

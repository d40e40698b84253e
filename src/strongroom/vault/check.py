"""Vault verification: structure always, every chunk's bytes with ``read_data``.

Problems are collected, never raised, so one run names every damaged object and the recovery
points that depend on it.  Errors make the vault unhealthy; warnings (such as packs left by an
interrupted backup, which prune reclaims) do not.
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import field

from strongroom.errors import IntegrityError, ObjectNotFound, StorageError
from strongroom.records import dataclass
from strongroom.storage.names import content_digest
from strongroom.vault.index import IndexEntry
from strongroom.vault.pack import BlobDecoder, pack_name, pack_tail_size, read_pack_header
from strongroom.vault.points import RecoveryPoint
from strongroom.vault.trees import walk
from strongroom.vault.vault import Vault
from strongroom.vault.writer import CHUNK_TREE

_PACK_NAME = re.compile(r"^data/([0-9a-f]{2})/([0-9a-f]{64})$")


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" or "warning"
    name: str
    message: str


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    packs_checked: int = 0
    chunks_checked: int = 0
    bytes_read: int = 0
    points_checked: int = 0
    damaged_chunks: set[bytes] = field(default_factory=set)
    affected_points: dict[str, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, name: str, message: str) -> None:
        self.problems.append(Problem("error", name, message))

    def warn(self, name: str, message: str) -> None:
        self.problems.append(Problem("warning", name, message))


Progress = Callable[[str, int, int], None]


def check_vault(
    vault: Vault,
    *,
    read_data: bool = False,
    subset: float | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """``subset`` is the share of packs (0 < subset <= 1) whose data is read."""
    report = CheckReport()
    for exc in vault.problems.index:
        report.error(exc.name or "index/", str(exc))
    _check_keys(vault, report)
    _check_index_objects(vault, report)
    by_pack = _entries_by_pack(vault)
    present = _check_packs(vault, by_pack, report)
    points = vault.points(strict=False, include_deleted=True)
    for exc in vault.problems.points:
        report.error(exc.name or "points/", str(exc))
    _check_tombstones(vault, points, report)
    if read_data or subset is not None:
        chosen = _choose_packs(sorted(p for p in by_pack if p in present), subset)
        _read_packs(vault, chosen, by_pack, report, progress)
    _check_points(vault, points, report)
    return report


def _check_keys(vault: Vault, report: CheckReport) -> None:
    """config, the key slots and their copies (see :mod:`strongroom.vault.copies`)."""
    from strongroom.vault.copies import check_copies

    check_copies(vault, report.error, report.warn)


def _check_index_objects(vault: Vault, report: CheckReport) -> None:
    for name in sorted(vault.superseded & vault.index_names):
        report.warn(
            name,
            "superseded by a newer index object (left by an interrupted prune or repair: "
            "the next prune removes it)",
        )
    for pack_id in vault.index.conflicts:
        report.error(
            pack_name(pack_id),
            "index objects disagree about this pack's contents (check --repair rebuilds them)",
        )


def _check_tombstones(vault: Vault, points: list[RecoveryPoint], report: CheckReport) -> None:
    for exc in vault.problems.tombstones:
        report.error(exc.name or "deleted/", f"{exc} (ignored: the point stays visible)")
    known = {p.point_id for p in points}
    for point_id, stone in vault.tombstones().items():
        if point_id not in known:
            report.warn(stone.name, "tombstone of a point that no longer exists (prune removes it)")


def _entries_by_pack(vault: Vault) -> dict[bytes, list[tuple[bytes, IndexEntry]]]:
    by_pack: dict[bytes, list[tuple[bytes, IndexEntry]]] = defaultdict(list)
    for cid, entry in vault.index.iter_entries():
        by_pack[entry.pack].append((cid, entry))
    return by_pack


def _check_packs(
    vault: Vault, by_pack: dict[bytes, list[tuple[bytes, IndexEntry]]], report: CheckReport
) -> dict[bytes, int]:
    present: dict[bytes, int] = {}
    for info in vault.backend.list("data/"):
        m = _PACK_NAME.match(info.name)
        if not m or m.group(1) != m.group(2)[:2]:
            report.warn(info.name, "unexpected object under data/ (not a pack name)")
            continue
        if info.size == 0:
            report.error(info.name, "zero-length object")
        present[bytes.fromhex(m.group(2))] = info.size
    for pack_id, entries in by_pack.items():
        name = pack_name(pack_id)
        size = present.get(pack_id)
        end = max(e.offset + e.length for _, e in entries)
        expected = end + pack_tail_size(len(entries))
        if size is None:
            report.error(name, f"pack missing: the index says it holds {len(entries)} chunks")
        elif size < end:
            report.error(name, f"pack truncated: {size} bytes, the index needs at least {end}")
        elif size != expected:
            report.error(
                name,
                f"pack is {size} bytes, but a pack of the {len(entries)} chunks the index lists "
                f"is {expected} (truncated or damaged header, or a wrong index entry)",
            )
        else:
            continue
        report.damaged_chunks.update(cid for cid, _ in entries)
    for pack_id in present.keys() - by_pack.keys():
        report.warn(
            pack_name(pack_id),
            "pack not in any index (left by an interrupted backup: prune removes it, "
            "check --repair indexes it)",
        )
    return present


def _choose_packs(packs: list[bytes], subset: float | None) -> list[bytes]:
    if subset is None or subset >= 1:
        return packs
    n = max(1, math.ceil(len(packs) * subset)) if packs else 0
    return random.sample(packs, n)


def _read_packs(
    vault: Vault,
    packs: list[bytes],
    by_pack: dict[bytes, list[tuple[bytes, IndexEntry]]],
    report: CheckReport,
    progress: Progress | None,
) -> None:
    def one(pack_id: bytes) -> tuple[list[tuple[str, str]], set[bytes], int, int]:
        return _read_pack(vault, pack_id, by_pack[pack_id])

    with ThreadPoolExecutor(2, thread_name_prefix="check-read") as pool:
        for done, (errors, damaged, nbytes, nchunks) in enumerate(pool.map(one, packs), 1):
            for name, message in errors:
                report.error(name, message)
            report.damaged_chunks |= damaged
            report.bytes_read += nbytes
            report.chunks_checked += nchunks
            report.packs_checked += 1
            if progress:
                progress("read", done, len(packs))


def _read_pack(
    vault: Vault, pack_id: bytes, entries: list[tuple[bytes, IndexEntry]]
) -> tuple[list[tuple[str, str]], set[bytes], int, int]:
    name = pack_name(pack_id)
    all_ids = {cid for cid, _ in entries}
    try:
        data = vault.backend.get(name)
        if content_digest(data) != pack_id:
            data = vault.backend.get(name)  # a flipped bit in transit: read it once more
    except (ObjectNotFound, StorageError) as exc:
        return [(name, f"cannot read pack: {exc}")], all_ids, 0, 0
    errors: list[tuple[str, str]] = []
    if content_digest(data) != pack_id:
        errors.append((name, "pack content does not match its name (corrupted)"))
    try:
        contents = read_pack_header(vault.keys, data, name)
    except IntegrityError as exc:
        errors.append((name, str(exc)))
        contents = None
    listed = (
        {}
        if contents is None
        else {cid: off for cid, _, _, _, off, _, _ in contents.entries.rows()}
    )
    cipher = vault.keys.pack_cipher(vault.index.salt_of(pack_id))
    decoder = BlobDecoder(vault.keys)
    damaged: set[bytes] = set()
    for cid, e in entries:
        if contents is not None and listed.get(cid) != e.offset:
            errors.append((name, f"chunk {cid.hex()[:16]} is indexed but not in the pack header"))
        try:
            blob = memoryview(data)[e.offset : e.offset + e.length]
            decoder.decode(cipher, blob, cid, e.ctype, e.flags, e.raw, name)
        except IntegrityError as exc:
            errors.append((name, str(exc)))
            damaged.add(cid)
    return errors, damaged, len(data), len(entries)


def _check_points(vault: Vault, points: list[RecoveryPoint], report: CheckReport) -> None:
    """Every chunk a point reaches must be indexed and intact; map damage to points."""
    trees: dict[bytes, bytes] = {}

    def is_tree(cid: bytes) -> bool | None:
        entry = vault.index.lookup(cid)
        return None if entry is None else entry.ctype == CHUNK_TREE

    def read(cid: bytes) -> bytes:
        if cid not in trees:
            trees[cid] = vault.read_chunk(cid)
        return trees[cid]

    deleted = vault.tombstones()
    for point in points:
        report.points_checked += 1
        hit: list[str] = []
        roots = [bytes.fromhex(r) for r in point.manifest.roots]
        # Damage to a forgotten (soft-deleted) point is worth knowing, not an error.
        note = report.warn if point.point_id in deleted else report.error
        what = "soft-deleted point" if point.point_id in deleted else "point"
        try:
            for cid, _ in walk(roots, is_tree, read, set()):
                if cid in report.damaged_chunks:
                    hit.append(cid.hex())
                elif cid not in vault.index:
                    note(
                        f"points/{point.point_id}",
                        f"{what} references chunk {cid.hex()[:16]}, not in the index",
                    )
                    hit.append(cid.hex())
        except IntegrityError as exc:
            note(exc.name or f"points/{point.point_id}", f"{what} {point.short_id}: {exc}")
            hit.append("(tree unreadable)")
        if hit:
            report.affected_points[point.point_id] = hit

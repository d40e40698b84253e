"""Copying recovery points between vaults (``strongroom copy``): the offsite copy.

Chunk ids are keyed per vault, so a chunk's id in the destination is computed from its
plaintext: every chunk a point reaches is read (and verified) from the source, and the
destination's writer stores it only when its index lacks it.  Trees are rewritten without
knowing the engines' formats: a tree chunk is ``reference table | opaque body`` and bodies
refer to chunks only by their index in the table (``docs/format.md`` §5, §18), so copying a
tree is copying its children first and writing the same body with the table mapped.

A copied point keeps its manifest (kind, source, time, tags, summary, meta) with the roots
and parent mapped, and records ``meta["copied_from"] = {"vault": ..., "point": ...}``; a
point whose copy is already in the destination is skipped, so an interrupted copy resumes
where it stopped (chunks of a point not committed are found again by the index, or written
again if their packs were never indexed; prune removes those).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import field

from strongroom.errors import VaultError
from strongroom.records import dataclass
from strongroom.vault.points import RecoveryPoint
from strongroom.vault.trees import decode_tree
from strongroom.vault.vault import Vault
from strongroom.vault.writer import CHUNK_TREE, ChunkWriter

COPIED_FROM = "copied_from"


@dataclass
class CopyReport:
    copied: list[tuple[str, str]] = field(default_factory=list)  # (source id, new id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source id, earlier copy)
    chunks_read: int = 0
    chunks_new: int = 0
    bytes_added: int = 0


def copies_in(dst: Vault, src_vault_id: bytes) -> dict[str, str]:
    """Source point id -> id of its copy in ``dst`` (copies from that source vault only)."""
    found: dict[str, str] = {}
    for p in dst.points(include_deleted=True):
        origin = p.manifest.meta.get(COPIED_FROM)
        if isinstance(origin, dict) and origin.get("vault") == src_vault_id.hex():
            found[str(origin.get("point"))] = p.point_id
    return found


class _Copier:
    """Maps source chunk ids to destination ids, copying what is not mapped yet."""

    def __init__(self, src: Vault, dst: Vault, report: CopyReport) -> None:
        self.src, self.dst, self.report = src, dst, report
        self.mapped: dict[bytes, bytes] = {}

    def _is_tree(self, cid: bytes) -> bool:
        entry = self.src.index.lookup(cid)
        if entry is None:
            raise VaultError(f"the source vault lacks chunk {cid.hex()[:16]}: run check there")
        return entry.ctype == CHUNK_TREE

    def _copy_data(self, writer: ChunkWriter, ids: list[bytes]) -> None:
        for cid, data in zip(ids, self.src.reader.read_many(ids), strict=True):
            result = writer.put(data)
            self.mapped[cid] = result.chunk_id
            self.report.chunks_read += 1

    def copy(self, writer: ChunkWriter, root: bytes) -> bytes:
        """The destination id of ``root`` and everything below it (children first; an
        explicit stack, so deep folder trees need no recursion)."""
        stack: list[tuple[bytes, tuple[list[bytes], bytes] | None]] = [(root, None)]
        while stack:
            cid, tree = stack[-1]
            if cid in self.mapped:
                stack.pop()
            elif tree is None and not self._is_tree(cid):
                self._copy_data(writer, [cid])
                stack.pop()
            elif tree is None:
                refs, body = decode_tree(self.src.read_chunk(cid))
                self.report.chunks_read += 1
                stack[-1] = (cid, (refs, body))
                todo = list(dict.fromkeys(r for r in refs if r not in self.mapped))
                data = [r for r in todo if not self._is_tree(r)]
                self._copy_data(writer, data)  # read in parallel, in order
                stack.extend((r, None) for r in todo if r not in self.mapped)
            else:
                refs, body = tree
                new = self.dst.put_tree(writer, [self.mapped[r] for r in refs], body)
                self.mapped[cid] = new
                stack.pop()
        return self.mapped[root]


def copy_points(
    src: Vault,
    dst: Vault,
    points: Iterable[RecoveryPoint],
    progress: Callable[[RecoveryPoint, str], None] | None = None,
) -> CopyReport:
    """Copy ``points`` (oldest first) from ``src`` into ``dst``; see the module docstring.
    ``progress(point, "copied" | "skipped")`` is told about each."""
    if src.vault_id == dst.vault_id:
        raise VaultError("the source and the destination are the same vault")
    report = CopyReport()
    copier = _Copier(src, dst, report)
    with src.read_lock(), dst.lock():
        done = copies_in(dst, src.vault_id)
        for p in sorted(points, key=lambda q: (q.manifest.time, q.point_id)):
            if p.point_id in done:
                report.skipped.append((p.point_id, done[p.point_id]))
                if progress is not None:
                    progress(p, "skipped")
                continue
            new = _copy_one(copier, p, done)
            done[p.point_id] = new.point_id
            report.copied.append((p.point_id, new.point_id))
            if progress is not None:
                progress(p, "copied")
    return report


def _copy_one(copier: _Copier, p: RecoveryPoint, done: dict[str, str]) -> RecoveryPoint:
    writer = copier.dst.writer()
    try:
        roots = [copier.copy(writer, bytes.fromhex(r)).hex() for r in p.manifest.roots]
        writer.flush()
        copier.report.chunks_new += writer.stats.chunks_new
        copier.report.bytes_added += writer.stats.stored_new
    finally:
        writer.close()
    m = p.manifest
    origin = {"vault": copier.src.vault_id.hex(), "point": p.point_id}
    manifest = dataclasses.replace(
        m,
        roots=roots,
        parent=done.get(m.parent) if m.parent else None,
        meta={**m.meta, COPIED_FROM: origin},
    )
    return copier.dst.save_point(manifest)

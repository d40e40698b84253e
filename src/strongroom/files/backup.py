"""File-level backup: the walk (``walker.py``) under the run's lock, then the commit: the
worker processes' packs and index objects and this process's (written at the same time),
the recovery point, and last the files cache's transaction.  Workers may have been started
while the vault was opened (``warmstart.py``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from strongroom.chunking import ALGORITHM
from strongroom.errors import FilesError
from strongroom.files.backuptypes import BackupOptions, BackupSummary, Progress, WrittenCounts
from strongroom.files.cache import FilesCache
from strongroom.files.cachepath import cache_path, cache_scope
from strongroom.files.cores import process_count
from strongroom.files.selection import build_selection
from strongroom.files.vaultview import BackupVault
from strongroom.files.walker import TreeWalker
from strongroom.vault import PointManifest

if TYPE_CHECKING:
    from strongroom.files.warmstart import WarmWorkers
    from strongroom.vault import ChunkClaims

__all__ = ["BackupOptions", "BackupSummary", "Progress", "backup_files"]

_MAX_LISTED = 1000  # errors and inconsistent paths kept in the point's meta


def _manifest(
    vault: BackupVault,
    opts: BackupOptions,
    source: str,
    root: bytes,
    s: BackupSummary,
    roots: list[str],
) -> PointManifest:
    earlier = [
        pt for pt in vault.points() if pt.manifest.kind == "files" and pt.manifest.source == source
    ]
    p = opts.cdc
    meta: dict[str, Any] = {
        "paths": roots,
        "excludes": list(opts.excludes),
        "one_file_system": opts.one_file_system,
        "tree_format": "files-tree/1",
        "chunker": {
            "algorithm": ALGORITHM,
            "min": p.min_size,
            "avg": p.avg_size,
            "max": p.max_size,
        },
        "errors": [{"path": a, "reason": b} for a, b in s.errors[:_MAX_LISTED]],
        "inconsistent": s.inconsistent[:_MAX_LISTED],
    }
    return PointManifest(
        kind="files",
        source=source,
        roots=[root.hex()],
        parent=earlier[-1].point_id if earlier else None,
        consistency="per-file" if not s.inconsistent else "per-file-inconsistent",
        tags=list(opts.tags),
        summary=s.counts(),
        meta=meta,
    )


def _cache_warnings(cache: FilesCache, s: BackupSummary) -> None:
    s.warnings.extend(cache.warnings)
    if cache.rejected:
        s.warnings.append(
            f"files cache {cache.path}: the rows of {cache.rejected} folder(s) failed"
            " authentication (damaged or tampered with); their files were read again"
        )


def _claims_for(vault: BackupVault, opts: BackupOptions) -> ChunkClaims | None:
    """The table this process's writer shares with the worker processes, so that only one
    of them stores a chunk (``vault/claims.py``); None where no worker can start."""
    if process_count(opts.processes, spare=1) == 0 or vault.handoff() is None:
        return None
    from strongroom.vault import ChunkClaims

    return ChunkClaims.create()


def _check_claimed(vault: BackupVault, borrowed: list[bytes], theirs: list[str]) -> None:
    """Every chunk a process of this backup left to another (it was claimed first) is in the
    index once all of them flushed, the workers' index objects (``theirs``) included; else
    the point is not saved.  A claimant that failed fails the backup before this, so only a
    bug or a chunk id sharing its first 64 bits with another's could get here: an error,
    never a point referring to a chunk nobody stored.  Nothing borrowed (no copies in the
    tree), nothing loaded: the workers' objects then load after the point, while the
    workers' memory is gone."""
    if not borrowed:
        return
    vault.adopt_index(theirs)
    lost = vault.missing_chunks(borrowed)
    if lost:
        raise FilesError(
            f"{len(lost)} chunks that another process of this backup claimed were not stored"
            " (no recovery point saved; run the backup again)"
        )


def backup_files(
    vault: BackupVault,
    opts: BackupOptions,
    progress: Progress | None = None,
    warm: WarmWorkers | None = None,
) -> BackupSummary:
    """Back up ``opts.paths`` into a new recovery point; see the module docstring.
    ``warm``: worker processes started while the vault was opened (``warmstart.py``); those
    the backup does not take stay with it."""
    started = time.monotonic()
    selection, roots = build_selection(opts.paths)
    source = opts.source_name()
    with vault.lock():
        claims = _claims_for(vault, opts)
        writer = vault.writer(claims=claims)
        engine = TreeWalker(vault, writer, opts)
        engine.warm = warm
        engine.progress = progress
        engine.summary.source = source
        committed = False
        try:
            if opts.use_cache:
                engine.cache = FilesCache(
                    cache_path(vault.vault_id, source, opts.cache_root),
                    vault.local_cache_key(cache_scope(source)),
                )
            root = engine.run(selection)
            # every pack and index object, the workers' while this process writes its own,
            # before the point: it may need any of them
            if engine.procs is not None:
                engine.procs.start_flush()
            writer.flush()
            theirs = engine.procs.finish_flush() if engine.procs is not None else WrittenCounts()
            if progress is not None:  # a cancel that came while the last packs uploaded
                progress(engine.done_files, engine.done_bytes, "")
            s = engine.summary
            s.bytes_added = writer.stats.stored_new + theirs.stored_new
            s.data_added = writer.stats.raw_new + theirs.raw_new
            s.chunks_new = writer.stats.chunks_new + theirs.chunks_new
            s.duration = time.monotonic() - started
            _check_claimed(vault, writer.borrowed + theirs.borrowed, theirs.index_names)
            point = vault.save_point(_manifest(vault, opts, source, root, s, roots))
            s.point_id = point.point_id
            vault.adopt_index(theirs.index_names)  # for this handle's next backup
            if engine.cache is not None:
                engine.cache.commit(vault.index_names)
                _cache_warnings(engine.cache, s)
            committed = True
        finally:
            if engine.procs is not None:
                engine.procs.close(abandon=not committed)
            if warm is not None:
                warm.close()
            engine.pool.shutdown(wait=True, cancel_futures=True)
            engine.reader.content.close()
            writer.close()
            if claims is not None:
                claims.close()
            if engine.cache is not None:
                engine.cache.close()
    engine.summary.duration = time.monotonic() - started
    return engine.summary

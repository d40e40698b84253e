"""The files backup's walk: list, read in worker threads (or hand folders to worker processes),
one tree chunk per directory.

The walker (the calling thread) lists directories depth first, stats every entry, reads
xattrs and symlink targets, and answers unchanged files from the files cache.  Files to read go
to a thread pool in batches (many small files per task, big files alone); workers read, chunk
and ``put`` (hashing, compression and encryption release the GIL).  Results come back to the
walker thread, which owns all state: a directory's tree chunk is written as soon as the
directory is listed and all of its files and subdirectories are done, so trees are written
post-order and memory holds only the directories in flight.  Then the writer is flushed (packs,
then index) and the recovery point saved: the commit.
"""

from __future__ import annotations

import itertools
import os
import queue
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from strongroom.chunking import ContentChunker
from strongroom.errors import FilesError
from strongroom.files.backuptypes import BackupOptions, BackupSummary, Progress
from strongroom.files.cache import CacheRow, DirRows, FilesCache
from strongroom.files.content import ContentReader
from strongroom.files.cores import process_count
from strongroom.files.longpath import Folder
from strongroom.files.metadata import (
    FL_NODUMP,
    Names,
    node_from_stat,
    read_flags_at,
    read_xattrs,
)
from strongroom.files.nodes import DIR, FILE, SYMLINK, TEMP_PREFIX, Node, encode_dir
from strongroom.files.patterns import PatternSet
from strongroom.files.reading import FileItem, FileOutcome, FileReader
from strongroom.files.selection import Selection, auto_excluded
from strongroom.files.vaultview import BackupVault
from strongroom.vault import CHUNK_TREE, ChunkWriter, encode_tree

if TYPE_CHECKING:
    from strongroom.files.procpool import DirListing, DirWorkers

_BATCH_FILES = 128
_BATCH_BYTES = 4 << 20
# summary counts a worker's listing adds to the parent's
MERGED: tuple[str, ...] = ("files", "files_new", "files_changed", "files_unchanged", "dirs")
MERGED += ("others", "bytes_read", "tree_bytes_added", "logical_bytes")
_WHOLE_BELOW = 2  # folders this deep below a selected path go to a worker with their subtree


class DirState:
    """A directory being backed up: its nodes, and how many children are still in flight."""

    __slots__ = (
        "depth",
        "gone",
        "leaf",
        "listed",
        "node",
        "nodes",
        "parent",
        "path",
        "pending",
        "rows",
        "touch",
    )

    def __init__(self, path: bytes, node: Node | None, parent: DirState | None) -> None:
        self.path, self.node, self.parent = path, node, parent
        self.nodes: list[Node] = []
        self.pending = 0
        self.listed = False
        self.rows: list[CacheRow] = []  # new or changed rows for the files cache
        self.touch = False  # whether the files cache's rows for this directory need news
        self.gone: list[bytes] = []  # cached names that are no longer files here
        self.depth = 0  # below the nearest selected path
        self.leaf = False  # has no subfolders (its link count says so, where it can)


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _flags(path: bytes) -> int:
    """An entry's inode flags; 0 when it cannot be opened (its read reports why, if read)."""
    try:
        return read_flags_at(path)
    except OSError:
        return 0


class TreeWalker:
    def __init__(self, vault: BackupVault, writer: ChunkWriter, opts: BackupOptions) -> None:
        self.vault, self.writer, self.opts = vault, writer, opts
        self.summary = BackupSummary()
        self.names = Names()
        self.excludes = PatternSet(opts.excludes)
        self.skip_dirs = auto_excluded(vault, opts.cache_root)
        content = ContentReader(ContentChunker(opts.cdc), lambda d: writer.put(d).chunk_id)
        self.reader = FileReader(content, self.names)
        self.small = opts.cdc.min_size
        self.pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="files-read")
        self.results: queue.SimpleQueue[list[FileOutcome] | BaseException] = queue.SimpleQueue()
        self.inflight = 0
        self.max_inflight = 4 * max(1, opts.workers)
        self.batch: list[FileItem] = []
        self.batch_bytes = 0
        self.cache: FilesCache | None = None
        self.root_id: bytes | None = None
        self.progress: Progress | None = None
        self.done_files = 0
        self.done_bytes = 0
        self.stack: list[tuple[DirState, Selection | None, int]] = []
        self.procs: DirWorkers | None = None
        self.procs_wanted = process_count(opts.processes)
        self.to_read = 0  # files the walk found it must read
        self.delegated: dict[int, DirState] = {}
        self.tags = itertools.count()

    # --- walking ---------------------------------------------------------------------------

    def run(self, selection: Selection) -> bytes:
        self.stack = [(DirState(b"/", None, None), selection, -1)]
        return self._walk()

    def _walk(self) -> bytes:
        """Until the stack is empty and every read and worker is done; the top tree's id."""
        while self.stack or self.batch or self.inflight or self._workers_busy():
            if self.stack:
                d, sel, dev = self.stack.pop()
                if not self._delegate(d, sel, dev):
                    children = self._list(d, sel, dev)
                    d.listed = True
                    self.stack.extend(reversed(children))
                    self._maybe_finalize(d)
                    self._drain(block=False)
                    self._maybe_start_workers()
                self._pump(0)
                continue
            self._submit_batch()
            if self._workers_busy():
                self._drain(block=False)
                self._pump(0.02 if self.inflight else None)
            else:
                self._drain(block=True)
        if self.root_id is None:
            raise FilesError("internal error: the root tree was never written")
        return self.root_id

    # --- worker processes (files/procpool.py) ----------------------------------------------

    def _workers_busy(self) -> bool:
        return self.procs is not None and self.procs.busy

    def _maybe_start_workers(self) -> None:
        if self.procs is not None or self.procs_wanted == 0:
            return
        # only a walk with much to read pays for their start-up: an unchanged tree never does
        after = self.opts.processes_after
        if self.summary.files + self.summary.dirs < after or self.to_read < after // 3:
            return
        handoff = self.vault.handoff()
        if handoff is None:
            self.procs_wanted = 0
            return
        # no reader threads in them: the processes are the parallelism, and a thread would
        # only trade the interpreter lock back and forth
        source = self.summary.source
        use_cache = self.cache is not None
        theirs = replace(self.opts, processes=0, workers=0, source=source, use_cache=use_cache)
        from strongroom.files.procpool import DirWorkers  # only a run that starts them

        self.procs = DirWorkers(handoff, theirs, self.procs_wanted)
        self.summary.processes = self.procs_wanted

    def _delegate(self, d: DirState, sel: Selection | None, dev: int) -> bool:
        if self.procs is None or not self.procs.ready or (sel is not None and not sel.full):
            return False
        tag = next(self.tags)
        self.delegated[tag] = d
        # A whole subtree costs the parent nothing per file; one level at a time keeps the
        # workers evenly loaded where a subtree may be most of the tree (near the top).
        whole = d.leaf or d.depth >= _WHOLE_BELOW
        self.procs.list_dir(tag, d.path, dev, whole)
        return True

    def _pump(self, timeout: float | None) -> None:
        if self.procs is None:
            return
        for tag, listing in self.procs.poll(timeout):
            self._take(self.delegated.pop(tag), listing)

    def _take(self, d: DirState, listing: DirListing) -> None:
        """A worker's listing of ``d``: the whole subtree's tree id, or its nodes and the
        subfolders still to do (they go on the stack, to a worker again)."""
        if listing.dir_error is not None and d.node is not None:
            d.node.error = listing.dir_error
        _merge(self.summary, listing)
        self.summary.worker_dirs += 1
        self.done_files += listing.done_files
        self.done_bytes += listing.nread
        if self.cache is not None:
            self.cache.rejected += listing.rejected
            self.cache.store_prepared(listing.rows)
            for folder, gone in listing.touches:
                self.cache.touch_dir(folder, gone)
        if listing.tree_id is not None:
            self._maybe_finalize(self._subtree_done(d, listing.tree_id))
        else:
            d.nodes = listing.nodes
            for index, dev in listing.subdirs:
                node = d.nodes[index]
                sub = DirState(os.path.join(d.path, node.name), node, d)
                sub.depth = d.depth + 1
                d.pending += 1
                self.stack.append((sub, None, dev))
            d.listed = True
            self._maybe_finalize(d)
        if self.progress is not None:
            self.progress(self.done_files, self.done_bytes, _show(d.path))

    def _lookup(self, directory: bytes) -> DirRows:
        return self.cache.lookup_dir(directory) if self.cache is not None else DirRows({})

    def _list(
        self, d: DirState, sel: Selection | None, dev: int
    ) -> list[tuple[DirState, Selection | None, int]]:
        named = sel is not None and not sel.full
        try:
            folder = Folder(d.path)
        except OSError as exc:  # a long path opened step by step: a step failed
            if named:
                raise FilesError(f"{_show(d.path)}: {exc.strerror}") from None
            self._unlisted(d, exc)
            return []
        with folder:
            if sel is not None and not sel.full:
                entries = self._named_entries(folder, sel)
            else:
                entries = self._scan(d, folder)
            return self._entries(d, folder, sel, dev, entries)

    def _entries(
        self,
        d: DirState,
        folder: Folder,
        sel: Selection | None,
        dev: int,
        entries: list[tuple[bytes, os.stat_result]],
    ) -> list[tuple[DirState, Selection | None, int]]:
        rows = self._lookup(d.path)
        cached = rows.found
        lost = self.vault.missing_chunks(c for hit in cached.values() for c in hit.chunks)
        files: set[bytes] = set()
        children: list[tuple[DirState, Selection | None, int]] = []
        prefix = d.path if d.path.endswith(b"/") else d.path + b"/"  # os.path.join, per name
        for name, st in entries:
            child_sel = sel.children.get(name) if sel is not None and not sel.full else None
            restricted = child_sel is not None and not child_sel.full
            path = prefix + name
            if not restricted and (sel is None or sel.full) and self._excluded(path, st):
                continue
            # a file that is read gets its xattrs in the worker (from the open descriptor)
            node = self._node(folder, path, name, st, xattrs=not stat.S_ISREG(st.st_mode))
            if node is None:
                continue
            if self.opts.exclude_nodump and node.flags & FL_NODUMP:
                continue
            if node.kind == DIR:
                sub = DirState(path, node, d)
                sub.depth = 0 if child_sel is not None else d.depth + 1
                sub.leaf = st.st_nlink == 2  # ext4, XFS: 2 + its subfolders; btrfs says 1
                d.pending += 1
                self.summary.dirs += 1
                if child_sel is not None and child_sel.full:
                    children.append((sub, child_sel, st.st_dev))
                elif restricted:
                    children.append((sub, child_sel, -1))
                elif self.opts.one_file_system and dev >= 0 and st.st_dev != dev:
                    sub.listed = True  # a mount point: recorded, not entered
                    self._maybe_finalize(sub)
                else:
                    children.append((sub, None, dev))
            elif node.kind == FILE:
                files.add(name)
                self._file(d, path, node, st, cached.get(name), lost)
            else:
                self.summary.others += 1
            d.nodes.append(node)
        d.gone = [name for name in cached if name not in files]
        d.touch = rows.stale or bool(d.gone)
        return children

    def _named_entries(self, folder: Folder, sel: Selection) -> list[tuple[bytes, os.stat_result]]:
        found = []
        for name in sorted(sel.children):
            try:
                found.append((name, folder.lstat(name)))
            except OSError as exc:
                raise FilesError(f"{_show(folder.join(name))}: {exc.strerror}") from None
        return found

    def _scan(self, d: DirState, folder: Folder) -> list[tuple[bytes, os.stat_result]]:
        found = []
        try:
            entries = sorted((n, e) for n, e in folder.scandir() if not n.startswith(TEMP_PREFIX))
        except OSError as exc:
            self._unlisted(d, exc)
            return []
        for name, entry in entries:
            try:
                found.append((name, entry.stat(follow_symlinks=False)))
            except OSError as exc:
                self._error(folder.join(name), exc.strerror or str(exc))
        return found

    def _unlisted(self, d: DirState, exc: OSError) -> None:
        reason = f"cannot list directory: {exc.strerror}"
        self._error(d.path, reason)
        if d.node is not None:
            d.node.error = reason

    def _excluded(self, path: bytes, st: os.stat_result) -> bool:
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.excludes and self.excludes.matches(path, is_dir):
            return True
        if is_dir and (st.st_dev, st.st_ino) in self.skip_dirs:
            self.summary.skipped.append((_show(path), "strongroom's own vault or cache"))
            return True
        return False

    def _node(
        self, folder: Folder, path: bytes, name: bytes, st: os.stat_result, xattrs: bool
    ) -> Node | None:
        node = node_from_stat(name, st, self.names)
        if node is None:
            self.summary.skipped.append((_show(path), "socket (not backed up)"))
            return None
        try:
            if xattrs:
                node.xattrs = read_xattrs(folder.reach(name, path))
            if node.kind == SYMLINK:
                node.target = folder.readlink(name)
        except OSError as exc:
            self._error(path, f"cannot read metadata: {exc.strerror}")
        if node.kind == DIR or (node.kind == FILE and self.opts.exclude_nodump):
            node.flags = _flags(folder.reach(name, path))
        return node

    def _error(self, path: bytes | str, reason: str) -> None:
        shown = path if isinstance(path, str) else _show(path)
        self.summary.errors.append((shown, reason))

    # --- files -----------------------------------------------------------------------------

    def _file(
        self,
        d: DirState,
        path: bytes,
        node: Node,
        st: os.stat_result,
        hit: Any,
        lost: set[bytes],  # chunks of the folder's cache rows that the index no longer holds
    ) -> None:
        self.summary.files += 1
        if hit is not None and hit.matches(st) and not (lost and lost.intersection(hit.chunks)):
            # chattr and setxattr move ctime: the row is as new as the flags and xattrs
            node.chunks, node.extents, node.xattrs = hit.chunks, hit.extents, hit.xattrs
            if not self.opts.exclude_nodump:  # else read already
                node.flags = hit.flags
            self.summary.files_unchanged += 1
            self.done_files += 1
            return
        d.pending += 1
        self.to_read += 1
        item = FileItem(d, d.path, node, hit, st)
        if st.st_size >= self.small or st.st_blocks * 512 < st.st_size:
            self._submit([item])
            return
        self.batch.append(item)
        self.batch_bytes += st.st_size
        if len(self.batch) >= _BATCH_FILES or self.batch_bytes >= _BATCH_BYTES:
            self._submit_batch()

    def _submit_batch(self) -> None:
        if self.batch:
            items, self.batch, self.batch_bytes = self.batch, [], 0
            self._submit(items)

    def _submit(self, items: list[FileItem]) -> None:
        while self.inflight >= self.max_inflight:
            self._drain(block=True)
        self.inflight += 1
        if self.opts.workers > 0:
            self.pool.submit(self._work, items)
        else:  # read here (a worker process: the processes are the parallelism)
            self._work(items)

    def _work(self, items: list[FileItem]) -> None:
        try:
            self.results.put(self.reader.batch(items))
        except BaseException as exc:
            self.results.put(exc)

    def _drain(self, block: bool) -> None:
        while self.inflight:
            try:
                got = self.results.get(block=block)
            except queue.Empty:
                return
            self.inflight -= 1
            if isinstance(got, BaseException):
                raise got
            for outcome in got:
                self._settle(outcome)
            if self.progress is not None and got:
                self.progress(self.done_files, self.done_bytes, _show(got[-1].item.directory))
            block = False

    def _settle(self, out: FileOutcome) -> None:
        d: DirState = out.item.owner
        node = out.item.node
        s = self.summary
        self.done_files += 1
        self.done_bytes += out.nread
        s.bytes_read += out.nread
        if out.status == "error":
            self._error(os.path.join(d.path, node.name), out.error)
            d.nodes.remove(node)
            s.files -= 1
        else:
            if out.status == "new":
                s.files_new += 1
            elif out.status == "changed":
                s.files_changed += 1
            else:
                s.files_unchanged += 1
            if node.inconsistent:
                s.inconsistent.append(_show(os.path.join(d.path, node.name)))
            if out.meta_error:
                self._error(os.path.join(d.path, node.name), out.meta_error)
            if out.cache_row is not None:
                d.rows.append(out.cache_row)
        d.pending -= 1
        self._maybe_finalize(d)

    # --- trees -----------------------------------------------------------------------------

    def _maybe_finalize(self, d: DirState | None) -> None:
        while d is not None and d.listed and d.pending == 0:
            self.summary.logical_bytes += sum(n.size for n in d.nodes if n.kind == FILE)
            refs, body = encode_dir(d.nodes)
            put = self.writer.put(encode_tree(refs, body), CHUNK_TREE)
            if put.new:
                self.summary.tree_bytes_added += len(body) + 4 + 32 * len(refs)
            self._keep_rows(d)
            d.nodes, d.rows = [], []
            d = self._subtree_done(d, put.chunk_id)

    def _keep_rows(self, d: DirState) -> None:
        """The files cache's news of a finished folder (a worker process collects it)."""
        if self.cache is not None:
            if d.rows:
                self.cache.store(d.rows)
            if d.touch:
                self.cache.touch_dir(d.path, d.gone)

    def _subtree_done(self, d: DirState, tree_id: bytes) -> DirState | None:
        """Record ``d``'s tree in its parent; the parent, which may now be finished too."""
        d.pending = -1  # finalized
        if d.parent is None:
            self.root_id = tree_id
            return None
        assert d.node is not None
        d.node.subtree = tree_id
        d.parent.pending -= 1
        return d.parent


def _merge(s: BackupSummary, listing: DirListing) -> None:
    for key in MERGED:
        setattr(s, key, getattr(s, key) + listing.counts[key])
    s.errors.extend(listing.errors)
    s.inconsistent.extend(listing.inconsistent)
    s.skipped.extend(listing.skipped)

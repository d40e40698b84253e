"""The files backup's walk: list, read in worker threads (or hand folders to worker processes),
one tree chunk per directory.

The walker (the calling thread) lists directories depth first, stats every entry, reads
xattrs and symlink targets, and answers unchanged files from the files cache (and unchanged
folders from its folder rows, without building them: ``foldercache.py``).  Files to read go
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
import stat
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from strongroom.chunking import BytesLike, ContentChunker
from strongroom.errors import FilesError
from strongroom.files.backuptypes import BackupOptions, BackupSummary, Progress
from strongroom.files.cacherows import DirRows
from strongroom.files.content import ContentReader
from strongroom.files.cores import chunk_threads, process_count
from strongroom.files.dirstate import DirState, subfolders_match
from strongroom.files.foldercache import (
    EntriesDigest,
    digest_salt,
)
from strongroom.files.longpath import Folder
from strongroom.files.metadata import (
    FL_NODUMP,
    Names,
    node_from_stat,
    read_xattrs,
)
from strongroom.files.nodes import DIR, FILE, SYMLINK, Node, encode_dir
from strongroom.files.patterns import PatternSet
from strongroom.files.reading import FileItem, FileReader
from strongroom.files.selection import Selection, auto_excluded
from strongroom.files.vaultview import BackupVault
from strongroom.files.walklisting import FolderEntries, Targets, flags_of, show
from strongroom.files.walkprocs import ProcessWalk
from strongroom.files.walkreads import FileReads
from strongroom.files.walkrows import FolderReuse
from strongroom.vault import CHUNK_TREE, ChunkWriter, encode_tree

if TYPE_CHECKING:
    from strongroom.files.cache import FilesCache
    from strongroom.files.procpool import DirWorkers
    from strongroom.files.warmstart import WarmWorkers

_NONE_LOST: frozenset[bytes] = frozenset()  # a folder with no cache rows (see _fill)
# What an entry of a folder being filled becomes once its digest has it (see _fill)
_USED: tuple[bytes, os.stat_result] = (b"", os.stat_result((0,) * 10))


def _chunk_put(walker: TreeWalker) -> tuple[Callable[[BytesLike], bytes], Callable[[int], None]]:
    """The reader's ``put`` and ``tick``: the writer's put, and between the chunks of a big
    file this process reads itself, the workers' answers taken and folders handed out (not
    only once the file is done; a big file's chunks put by helper threads tick the reading
    thread instead).  The walker is held weakly: it holds the reader, and a cycle would keep
    the vault and the writer's pack buffers alive until the collector ran."""
    put = walker.writer.put
    walking = walker.walking_thread
    ref = weakref.ref(walker)
    # After a big file's chunk, and after small files' every millisecond: feeding costs a
    # poll (3-5 us), once per small file 0.08 CPU s of a 21,832-file tree; once per batch of
    # them (_submit) left its worker idle a third of the time, waiting for folders.
    least = walker.opts.cdc.min_size
    fed = [0.0]

    def tick(size: int) -> None:
        if size < least:
            now = time.monotonic()
            if now - fed[0] < 0.001:
                return
            fed[0] = now
        w = ref()
        if w is not None and w.procs is not None and threading.get_ident() == walking:
            w._feed_workers()

    def chunk_put(data: BytesLike) -> bytes:
        chunk_id = put(data).chunk_id
        tick(len(data))
        return chunk_id

    return chunk_put, tick


class TreeWalker(FolderEntries, FolderReuse, FileReads, ProcessWalk):
    def __init__(self, vault: BackupVault, writer: ChunkWriter, opts: BackupOptions) -> None:
        self.vault, self.writer, self.opts = vault, writer, opts
        self.summary = BackupSummary()
        self.names = Names()
        self.excludes = PatternSet(opts.excludes)
        self.skip_dirs = auto_excluded(vault, opts.cache_root)
        self.walking_thread = threading.get_ident()
        put, tick = _chunk_put(self)
        helpers = chunk_threads() if opts.workers > 0 else 0  # not in a worker process
        content = ContentReader(ContentChunker(opts.cdc), put, helpers, tick)
        self._init_reads(FileReader(content, self.names), opts)
        self.cache: FilesCache | None = None
        self.root_id: bytes | None = None
        self.progress: Progress | None = None
        self.done_files = 0
        self.done_bytes = 0
        self.stack: deque[tuple[DirState, Selection | None, int]] = deque()
        self.procs: DirWorkers | None = None
        self.procs_wanted = process_count(opts.processes, spare=1)  # this process walks too
        self.warm: WarmWorkers | None = None  # workers started early (warmstart.py)
        self.delegated: dict[int, DirState] = {}
        self.remote: dict[int, list[FileItem]] = {}  # files a worker reads for this process
        self.tags = itertools.count()
        self.salt = digest_salt(opts.exclude_nodump)
        self.folder_values: list[object] = []  # folder rows to write (prepared), in batches
        self.folder_bytes = 0  # their bodies'
        self.trust = False  # see _trusted
        self.rebuilt = 0  # entries of folders a row could not stand for
        # a subfolder's xattrs and flags read as it is listed (_own_meta), unless the walk
        # must see its flags as its parent is listed (no-dump entries are left out)
        self.defer_meta = not opts.exclude_nodump

    # --- walking ---------------------------------------------------------------------------

    def run(self, selection: Selection) -> bytes:
        self.stack = deque([(DirState(b"/", None, None), selection, -1)])
        if self.cache is not None:
            # before any row is read: rows that may name what a prune took are dropped (the
            # first folder waits for the index anyway)
            self.trust = self.cache.trusted_index(self.vault.index_names)
        root = self._walk()
        self._flush_folders()
        return root

    def _walk(self) -> bytes:
        """Until the stack is empty and every read and worker is done; the top tree's id."""
        while self.stack or self.batch or self.inflight or self._workers_busy():
            if self.stack:
                # the workers' answers taken, and folders handed out from the stack's bottom
                self._feed_workers()
                if self.stack:
                    d, sel, dev = self.stack.pop()
                    self._helping(sel)
                    children = self._list(d, sel, dev)
                    d.listed = True
                    self.stack.extend(reversed(children))
                    self._maybe_finalize(d)
                    self._drain(block=False)
                    self._maybe_start_workers()
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
                raise FilesError(f"{show(d.path)}: {exc.strerror}") from None
            self._unlisted(d, exc)
            self._own_meta(d, None)
            return []
        with folder:
            if sel is not None and not sel.full:
                named_entries = self._named_entries(folder, sel)
                self._own_meta(d, folder)
                return self._fill(d, folder, sel, dev, named_entries)
            key = self._folder_key()
            row = self._folder_row(d.path) if d.reusable and key is not None else None
            # no row to match (a first backup, a new folder): symlinks' targets read as listed
            targets = Targets() if row is None else None
            entries = self._included(d.path, self._scan(d, folder, targets))
            self._own_meta(d, folder)
            if row is not None and key is not None:
                reused = self._try_reuse(d, row, key, entries, dev)
                if reused is not None:
                    return reused
            if not d.reusable or key is None:
                return self._fill(d, folder, sel, dev, entries, targets=targets)
            self.rebuilt += len(entries)  # listed again entry by entry (_worth_workers)
            if d.digest is not None:  # taken by _try_reuse: the row did not match
                return self._fill(d, folder, sel, dev, entries, known=True)
            # the row's digest taken entry by entry, each lstat result let go once used: a
            # folder of 50,000 files had held 20 MiB of them until its end (session 29)
            digest = EntriesDigest(key, self.salt)
            children = self._fill(d, folder, sel, dev, entries, digest=digest, targets=targets)
            d.digest = digest.digest(self.names)
            return children

    def _included(
        self, directory: bytes, entries: list[tuple[bytes, os.stat_result]]
    ) -> list[tuple[bytes, os.stat_result]]:
        if not self.excludes and not self.skip_dirs:
            return entries
        prefix = directory if directory.endswith(b"/") else directory + b"/"
        return [(name, st) for name, st in entries if not self._excluded(prefix + name, st)]

    def _fill(
        self,
        d: DirState,
        folder: Folder,
        sel: Selection | None,
        dev: int,
        entries: list[tuple[bytes, os.stat_result]],
        done: dict[bytes, DirState] | None = None,
        digest: EntriesDigest | None = None,
        known: bool = False,
        targets: Targets | None = None,
    ) -> list[tuple[DirState, Selection | None, int]]:
        """Build ``d``'s nodes from its entries; the subfolders to walk (those in ``done``
        are finished already: a folder built after all, see :meth:`_rebuild`).  With
        ``digest`` each entry goes into it once used (its symlink's lstat as read again) and
        leaves ``entries``; ``known``: ``d.digest`` was taken of them already (they leave
        too); ``targets``: the symlinks' targets read as they were listed."""
        rows = self._lookup(d.path)
        cached = rows.found
        # asked only when there are rows (a new folder's cost 2 us: 13,000 folders' 26 ms)
        lost = (
            self.vault.missing_chunks(c for hit in cached.values() for c in hit.chunks)
            if cached
            else _NONE_LOST
        )
        files: set[bytes] = set()
        children: list[tuple[DirState, Selection | None, int]] = []
        prefix = d.path if d.path.endswith(b"/") else d.path + b"/"  # os.path.join, per name
        named = sel is not None and not sel.full
        for i, (name, st) in enumerate(entries):
            path = prefix + name
            target = targets.take(name, st, d) if targets is not None else None
            # a file that is read gets its xattrs in the worker (from the open descriptor)
            node = self._node(d, folder, path, name, st, not stat.S_ISREG(st.st_mode), target)
            if node is not None and node.kind == SYMLINK and target is None:
                entries[i] = (name, self._after_readlink(d, folder, name, st, node))
            if digest is not None:
                digest.add(*entries[i])
                entries[i] = _USED
            elif known:
                entries[i] = _USED
            if node is None:
                continue
            if self.opts.exclude_nodump and node.flags & FL_NODUMP:
                continue
            if node.kind == DIR:
                self.summary.dirs += 1
                old = done.get(name) if done is not None else None
                child = None
                if old is not None and old.pending == -1:
                    node.subtree, node.error = old.tree_id, old.error
                else:
                    child_sel = sel.children.get(name) if sel is not None and named else None
                    child = self._child(d, path, node, st, child_sel, dev)
                if child is not None:
                    children.append(child)
                    child[0].meta = self.defer_meta  # read as it is listed (_own_meta)
                elif self.defer_meta:  # not to be listed by this walk: read now, by path
                    self._dir_meta(d, node, path, folder.reach(name, path))
            elif node.kind == FILE:
                files.add(name)
                self._file(d, path, node, st, cached.get(name), lost)
            else:
                self.summary.others += 1
            d.nodes.append(node)
        d.gone = any(name not in files for name in cached)
        d.touch = rows.stale or d.gone
        return children

    def _child(
        self,
        d: DirState,
        path: bytes,
        node: Node,
        st: os.stat_result,
        child_sel: Selection | None,
        dev: int,
    ) -> tuple[DirState, Selection | None, int] | None:
        """A subfolder to walk (None: a mount point, recorded but not entered)."""
        sub = DirState(path, node, d)
        sub.depth = 0 if child_sel is not None else d.depth + 1
        sub.leaf = st.st_nlink == 2  # ext4, XFS: 2 + its subfolders; btrfs says 1
        d.pending += 1
        if child_sel is not None:
            return (sub, child_sel, st.st_dev if child_sel.full else -1)
        if self.opts.one_file_system and dev >= 0 and st.st_dev != dev:
            sub.listed = True
            self._maybe_finalize(sub)
            return None
        return (sub, None, dev)

    def _excluded(self, path: bytes, st: os.stat_result) -> bool:
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.excludes and self.excludes.matches(path, is_dir):
            return True
        if is_dir and (st.st_dev, st.st_ino) in self.skip_dirs:
            self.summary.skipped.append((show(path), "strongroom's own vault or cache"))
            return True
        return False

    def _node(
        self,
        d: DirState,
        folder: Folder,
        path: bytes,
        name: bytes,
        st: os.stat_result,
        xattrs: bool,
        target: bytes | None = None,
    ) -> Node | None:
        """``target``: a symlink's, read already (else read here)."""
        node = node_from_stat(name, st, self.names)
        if node is None:
            d.clean = False  # a folder row would leave out the note
            self.summary.skipped.append((show(path), "socket (not backed up)"))
            return None
        if node.kind == DIR and self.defer_meta:
            return node  # its xattrs and flags: see _fill
        try:
            if xattrs:
                node.xattrs = read_xattrs(folder.reach(name, path))
            if node.kind == SYMLINK:
                node.target = target if target is not None else folder.readlink(name)
        except OSError as exc:
            d.clean = False
            self._error(path, f"cannot read metadata: {exc.strerror}")
        if node.kind == DIR or (node.kind == FILE and self.opts.exclude_nodump):
            node.flags = flags_of(folder.reach(name, path))
        return node

    def _error(self, path: bytes | str, reason: str) -> None:
        shown = path if isinstance(path, str) else show(path)
        self.summary.errors.append((shown, reason))

    # --- trees -----------------------------------------------------------------------------

    def _maybe_finalize(self, d: DirState | None) -> None:
        while d is not None and d.listed and d.pending == 0:
            row = d.reuse
            if row is not None:
                if not subfolders_match(d, row):
                    self._rebuild(d)  # then round again: built, or waiting for its files
                    continue
                self.summary.logical_bytes += row.nbytes
                self.summary.dirs_reused += 1
                self._keep_rows(d)
                d.reuse, d.children, d.entries = None, {}, None
                d = self._subtree_done(d, row.tree)
                continue
            self.summary.logical_bytes += sum(n.size for n in d.nodes if n.kind == FILE)
            refs, body = encode_dir(d.nodes)
            put = self.writer.put(encode_tree(refs, body), CHUNK_TREE)
            if put.new:
                self.summary.tree_bytes_added += len(body) + 4 + 32 * len(refs)
            self._keep_rows(d)
            self._keep_folder(d, put.chunk_id)
            d.nodes, d.rows, d.kept, d.entries = [], [], [], None
            d = self._subtree_done(d, put.chunk_id)

    def _keep_rows(self, d: DirState) -> None:
        """The files cache's news of a finished folder (a worker process collects it)."""
        if self.cache is not None:
            if d.rows or d.gone:  # else its row holds (or it has none: no file has one)
                self.cache.store(d.path, d.kept, d.rows)
            if d.touch:
                self.cache.touch_dir(d.path)

    def _subtree_done(self, d: DirState, tree_id: bytes) -> DirState | None:
        """Record ``d``'s tree in its parent; the parent, which may now be finished too."""
        d.pending = -1  # finalized
        d.tree_id = tree_id
        if d.parent is None:
            self.root_id = tree_id
            return None
        if d.node is not None:  # none below a folder that matched its row
            d.node.subtree = tree_id
        d.parent.pending -= 1
        return d.parent

"""The part of a files backup's walk (files/walker.py) that hands folders to worker processes
(files/procpool.py) and takes their listings back."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from strongroom.files.backuptypes import BackupOptions, BackupSummary, Progress
from strongroom.files.dirstate import DirState
from strongroom.files.reading import FileItem, FileOutcome, FileReader
from strongroom.files.remoteread import outcome_of, read_request
from strongroom.files.selection import Selection
from strongroom.files.vaultview import BackupVault

if TYPE_CHECKING:
    from strongroom.files.backuptypes import DirListing
    from strongroom.files.cache import FilesCache
    from strongroom.files.procpool import DirWorkers
    from strongroom.files.warmstart import WarmWorkers
    from strongroom.vault import ChunkWriter

# summary counts a worker's listing adds to the parent's
MERGED: tuple[str, ...] = ("files", "files_new", "files_changed", "files_unchanged", "dirs")
MERGED += ("others", "bytes_read", "tree_bytes_added", "logical_bytes", "dirs_reused")
_WHOLE_BELOW = 2  # folders this deep below a selected path go to a worker with their subtree
# Entries met before folders listed again (not only files to read) start a worker: in a tree
# this big the walk left is worth the worker's start-up (a walk meets about 100,000 unchanged
# entries a second), and smaller trees keep their memory (a worker is some 60 MiB).
BIG_TREE = 60_000


class ProcessWalk:
    """Worker-process hand-off, mixed into :class:`TreeWalker`, which owns the state below."""

    helps = True  # list folders here while every worker is full (tests turn it off)

    opts: BackupOptions
    vault: BackupVault
    summary: BackupSummary
    cache: FilesCache | None
    procs: DirWorkers | None
    procs_wanted: int
    writer: ChunkWriter
    warm: WarmWorkers | None
    to_read: int
    rebuilt: int
    delegated: dict[int, DirState]
    remote: dict[int, list[FileItem]]
    tags: Iterator[int]
    stack: deque[tuple[DirState, Selection | None, int]]
    done_files: int
    done_bytes: int
    progress: Progress | None
    inline_reads: bool
    reader: FileReader

    def _maybe_finalize(self, d: DirState | None) -> None:
        raise NotImplementedError

    def _subtree_done(self, d: DirState, tree_id: bytes) -> DirState | None:
        raise NotImplementedError

    def _store_folder(self, values: list[object]) -> None:
        raise NotImplementedError

    def _own_meta(self, d: DirState, folder: None) -> None:
        raise NotImplementedError

    if TYPE_CHECKING:  # FileReads' (walkreads.py), TreeWalker's other base

        def _settle(self, out: FileOutcome) -> None: ...

    def _workers_busy(self) -> bool:
        return self.procs is not None and self.procs.busy

    def _maybe_start_workers(self) -> None:
        if self.procs is not None or self.procs_wanted == 0:
            return
        # only a walk with much to read pays for their start-up: an unchanged tree never does;
        # workers started while the vault opened (warmstart.py) are used from the start
        after = self.opts.processes_after
        warm = self.warm if self.warm is not None and self.warm.started else None
        if warm is None and not self._worth_workers(after):
            return
        handoff = self.vault.handoff()
        if handoff is None:  # warm workers are closed with their WarmWorkers (backup.py)
            self.procs_wanted = 0
            return
        started = warm.take() if warm is not None else []
        # no reader threads in them: the processes are the parallelism, and a thread would
        # only trade the interpreter lock back and forth
        source = self.summary.source
        use_cache = self.cache is not None
        theirs = replace(self.opts, processes=0, workers=0, source=source, use_cache=use_cache)
        from strongroom.files.procpool import DirWorkers  # only a run that starts them

        # the writer's claims, passed on: only one process stores a chunk (backup.py)
        claims = self.writer.claims
        rows = self.cache is not None and not self.cache.empty
        self.procs = DirWorkers(handoff, theirs, self.procs_wanted, started, claims, rows)
        self.summary.processes = self.procs_wanted
        self.inline_reads = True
        self.reader.content.helpers = 0  # the processes are the parallelism now

    def _worth_workers(self, after: int) -> bool:
        """``after`` entries met and, ahead, a third as many files to read or, in a big tree,
        folders to list and encode again entry by entry (an incremental whose changes touch
        many folders).  Not an unchanged tree, nor a small one: a worker costs a few tenths of
        a CPU second and some 60 MiB.  All of /usr's 1 % change (1,241 files in 835 of 16,206
        folders, 58,333 entries listed again) took 2.8-2.9 s with a worker started for its
        reads near the end, 2.5-2.7 s with one from its 60,000th entry (2.2-2.3 s from the
        start, but then the unchanged tree started one too; docs/benchmarks.md, "Session
        23")."""
        seen = self.summary.files + self.summary.dirs
        if seen < after:
            return False
        return self.to_read >= after // 3 or (seen >= BIG_TREE and self.rebuilt >= after)

    def _helping(self, sel: Selection | None) -> None:
        """Count a folder this process lists while workers run (every one was full)."""
        if self.procs is not None and self.procs.ready and (sel is None or sel.full):
            self.summary.helped_dirs += 1

    def _delegate(self, d: DirState, sel: Selection | None, dev: int) -> bool:
        if self.procs is None or not self.procs.ready or (sel is not None and not sel.full):
            return False
        self._own_meta(d, None)  # the worker lists it, but d's node is this process's
        tag = next(self.tags)
        self.delegated[tag] = d
        # A whole subtree costs the parent nothing per file; one level at a time keeps the
        # workers evenly loaded where a subtree may be most of the tree (near the top).
        whole = d.leaf or d.depth >= _WHOLE_BELOW
        self.procs.list_dir(tag, d.path, dev, whole)
        return True

    def _feed_workers(self) -> None:
        """Take the workers' answers and hand them folders while one has room: from the
        stack's bottom, the shallowest and so the biggest pending subtrees, while this
        process walks from its top (work stealing).  From the top, a tree of 12,500 small
        folders went to the worker a folder or two at a time, each a round trip: the worker
        sat idle a third of the time and this process listed 6,075 of them itself.

        Also called between the files this process reads itself: without it a worker that
        had done its two folders waited for the end of the parent's, and a folder of big
        files there left it idle for seconds: on /usr the worker waited a third of the run,
        blocked on its answer or on an empty pipe (docs/benchmarks.md, "Session 18").
        This process walks too, one level at a time, and reads those files itself
        (FileReads.inline_reads): on two cores one worker and this process back up 50,000
        small files in less time than two workers with this one only handing out folders,
        with a third less memory (docs/benchmarks.md, "Session 14")."""
        procs = self.procs
        if procs is None:
            return
        self._pump(0)
        stack, at = self.stack, 0
        while at < len(stack) and (not procs.full or not self.helps):
            d, sel, dev = stack[at]
            if self._delegate(d, sel, dev):
                del stack[at]
            elif not procs.ready:
                return
            else:
                at += 1  # a path named on the command line: walked here, not the rest

    def _read_remote(self, items: list[FileItem]) -> bool:
        """Hand files this process was about to read itself to a worker with room: the
        parent's own folders were the serial part of a big tree's backup (a folder of big
        files read here while the stack held nothing to hand out)."""
        procs = self.procs
        if procs is None or not procs.ready or procs.full:
            return False
        tag = next(self.tags)
        self.remote[tag] = items
        procs.read_files(tag, [read_request(item) for item in items])
        return True

    def _pump(self, timeout: float | None) -> None:
        if self.procs is None:
            return
        for tag, answer in self.procs.poll(timeout):
            if isinstance(answer, list):
                self.summary.worker_reads += len(answer)
                items = self.remote.pop(tag)
                for item, got in zip(items, answer, strict=True):
                    self._settle(outcome_of(item, got))
                if self.progress is not None:
                    self.progress(self.done_files, self.done_bytes, os.fsdecode(items[0].directory))
            else:
                self._take(self.delegated.pop(tag), answer)

    def _take(self, d: DirState, listing: DirListing) -> None:
        """A worker's listing of ``d``: the whole subtree's tree id, or its nodes and the
        subfolders still to do (they go on the stack, to a worker again)."""
        if listing.dir_error is not None:
            d.error = listing.dir_error
            if d.node is not None:
                d.node.error = listing.dir_error
        _merge(self.summary, listing)
        self.summary.worker_dirs += 1
        self.done_files += listing.done_files
        self.done_bytes += listing.nread
        if self.cache is not None:
            self.cache.rejected += listing.rejected
            self.cache.store_prepared(listing.rows)
            for folder in listing.touches:
                self.cache.touch_dir(folder)
            self._store_folder(listing.folders)
        if listing.tree_id is not None:
            self._maybe_finalize(self._subtree_done(d, listing.tree_id))
        else:
            d.nodes = listing.nodes
            subs = []
            for index, dev in listing.subdirs:
                node = d.nodes[index]
                sub = DirState(os.path.join(d.path, node.name), node, d)
                sub.depth = d.depth + 1
                d.pending += 1
                subs.append((sub, None, dev))
            self.stack.extend(reversed(subs))  # the first by name on top, as _walk's own
            d.listed = True
            self._maybe_finalize(d)
        if self.progress is not None:
            self.progress(self.done_files, self.done_bytes, os.fsdecode(d.path))


def _merge(s: BackupSummary, listing: DirListing) -> None:
    for key in MERGED:
        setattr(s, key, getattr(s, key) + listing.counts[key])
    s.errors.extend(listing.errors)
    s.inconsistent.extend(listing.inconsistent)
    s.skipped.extend(listing.skipped)

"""The part of a files backup's walk (files/walker.py) that reads files: answered from their
cache rows, or queued in batches to reader threads (``reading.py``), whose outcomes come back
to the walking thread."""

from __future__ import annotations

import os
import queue
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from strongroom.files.backuptypes import BackupOptions, BackupSummary, Progress
from strongroom.files.cacherows import encode_record
from strongroom.files.dirstate import DirState, row_fits
from strongroom.files.nodes import Node
from strongroom.files.reading import FileItem, FileOutcome, FileReader

_BATCH_FILES = 128
_BATCH_BYTES = 4 << 20
# Big files' reads stay on the walking thread until the walk has found more than this to
# read: the reader threads' hand-offs (a futex and a queue a task, the interpreter lock traded
# with the walk) cost a small tree more than their parallelism gains it.  /etc (386 files to
# read, 2 MiB) took 0.39 CPU s with two reader threads and 0.32 without, wall 0.34 -> 0.28 s
# (docs/benchmarks.md, "Session 40").  A big file is past the bytes at once.
_ALONE_FILES = 1000
_ALONE_BYTES = 16 << 20
# Small files are always read on the walking thread.  A small file's read, hash, compression
# and encryption each release the interpreter lock for a few microseconds, and with a reader
# thread on another core every release was a hand-over: with no worker processes on two
# cores, 25,000 files in 12,500 folders took 5.3 s and 7.3 CPU s with two reader threads
# (115,000 context switches) and 3.0 s and 3.0 CPU s without, and on one core 50,000 small
# files took 10-15 % less (docs/benchmarks.md, "Session 41").  Only big files, whose chunks
# keep a core busy between hand-overs, go to the threads.


class FileReads:
    """File reads, mixed into :class:`TreeWalker`, which owns the state declared here."""

    opts: BackupOptions
    summary: BackupSummary
    done_files: int
    done_bytes: int
    progress: Progress | None

    def _init_reads(self, reader: FileReader, opts: BackupOptions) -> None:
        self.reader = reader
        self.small = opts.cdc.min_size
        self.pool = ThreadPoolExecutor(max(1, opts.workers), thread_name_prefix="files-read")
        self.results: queue.SimpleQueue[list[FileOutcome] | BaseException] = queue.SimpleQueue()
        self.inflight = 0
        self.max_inflight = 4 * max(1, opts.workers)
        self.batch: list[FileItem] = []
        self.batch_bytes = 0
        self.to_read = 0  # files the walk found it must read
        self.to_read_bytes = 0  # and their sizes
        # reading on this thread until the walk finds more than _ALONE_FILES or _ALONE_BYTES
        self.alone = opts.workers > 0
        # Read on the walking thread, not the pool's: with no reader threads, and once worker
        # processes run, since they are the parallelism then and a reader thread would only
        # trade the interpreter lock with the walk.
        self.inline_reads = opts.workers <= 0

    def _maybe_finalize(self, d: DirState | None) -> None:
        raise NotImplementedError

    def _error(self, path: bytes | str, reason: str) -> None:
        raise NotImplementedError

    if TYPE_CHECKING:  # ProcessWalk's (walkprocs.py), TreeWalker's other base

        def _feed_workers(self) -> None: ...

        def _maybe_start_workers(self) -> None: ...

        def _read_remote(self, items: list[FileItem]) -> bool: ...

    def _file(
        self,
        d: DirState,
        path: bytes,
        node: Node,
        st: os.stat_result,
        hit: Any,
        lost: AbstractSet[bytes],  # chunks of the folder's cache rows the index no longer has
    ) -> None:
        self.summary.files += 1
        if hit is not None and hit.matches(st) and (not lost or lost.isdisjoint(hit.chunks)):
            # chattr and setxattr move ctime: the row is as new as the flags and xattrs
            node.chunks, node.extents, node.xattrs = hit.chunks, hit.extents, hit.xattrs
            if not self.opts.exclude_nodump:  # else read already
                node.flags = hit.flags
            d.kept.append(hit.record)
            self.summary.files_unchanged += 1
            self.done_files += 1
            return
        d.pending += 1
        self.to_read += 1
        self.to_read_bytes += st.st_size
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
            self._submit(items, small=True)

    def _submit(self, items: list[FileItem], small: bool = False) -> None:
        """Read ``items`` (a batch of small files, or one big or sparse file) here, in a
        worker process, or in a reader thread (only a big file: see _ALONE_FILES)."""
        while self.inflight >= self.max_inflight:
            self._drain(block=True)
        if not self.inline_reads:
            self._maybe_start_workers()  # a big folder need not end before they start
        if self.inline_reads:
            self._feed_workers()
            if self._read_remote(items):
                return
        self.inflight += 1
        if self.inline_reads or small or self._alone():
            self._work(items)
        else:
            self.pool.submit(self._work, items)

    def _alone(self) -> bool:
        """Whether this thread still reads alone (see _ALONE_FILES)."""
        if self.alone and (self.to_read > _ALONE_FILES or self.to_read_bytes > _ALONE_BYTES):
            self.alone = False
        return self.alone

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
                self.progress(self.done_files, self.done_bytes, os.fsdecode(got[-1].item.directory))
            block = False

    def _settle(self, out: FileOutcome) -> None:
        d: DirState = out.item.owner
        node = out.item.node
        s = self.summary
        self.done_files += 1
        self.done_bytes += out.nread
        s.bytes_read += out.nread
        if out.status == "error":
            d.clean = False
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
                s.inconsistent.append(os.fsdecode(os.path.join(d.path, node.name)))
            if out.meta_error:
                self._error(os.path.join(d.path, node.name), out.meta_error)
            if out.cache_row is not None:  # encoded now: a tuple and a list a file had
                d.rows.append(encode_record(out.cache_row))  # held 13 MiB of 50,000
            if out.meta_error or not row_fits(out.cache_row, out.item.st):
                d.clean = False  # not recorded without a doubt: the next backup reads it
        d.pending -= 1
        self._maybe_finalize(d)

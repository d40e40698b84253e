"""A files backup's worker process: lists the directories its parent hands it and reads their
files into its own packs (see ``procpool.py`` for why and for the protocol).

    python -m strongroom.files.procwork FD

FD is this end of the parent's socket pair.  The first message opens the vault; then each
``dir`` message gets a ``dir`` answer, ``flush`` writes the packs and index objects and answers
with their counts.  End of input without a flush abandons the run (the parent failed or was
interrupted): nothing is flushed.  SIGINT is ignored, since the terminal sends it to the whole
process group and the parent decides; the parent's SIGTERM (an abandoned run) unwinds through
the clean-up that removes temporary packs; the parent's death closes the pipe.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from strongroom import failpoints, malloctune
from strongroom.files.backuptypes import BackupOptions, BackupSummary, DirListing, WrittenCounts
from strongroom.files.cachepath import cache_path, cache_scope
from strongroom.files.cacherows import DirRows, prepare_dir
from strongroom.files.channel import Channel
from strongroom.files.dirstate import DirState
from strongroom.files.foldercache import FolderRow
from strongroom.files.nodes import DIR, Node
from strongroom.files.remoteread import read_for_parent
from strongroom.files.walker import TreeWalker
from strongroom.files.walkprocs import MERGED
from strongroom.files.workermain import serve_main
from strongroom.vault import ChunkClaims, ChunkWriter, Vault, open_handoff

if TYPE_CHECKING:
    from strongroom.files.cache import CacheReader


class WorkerWalker(TreeWalker):
    """The walk inside a worker: folders come from the parent, cache rows are looked up here
    (read only) and the news collected for the parent, which alone writes the cache."""

    def __init__(self, vault: Vault, writer: ChunkWriter, opts: BackupOptions) -> None:
        super().__init__(vault, writer, opts)
        self.lookups: CacheReader | None = None
        self.cache_key = b""
        self.news = DirListing(counts={})
        self.now = 0
        self.listed = 0  # folders asked for

    def _lookup(self, directory: bytes) -> DirRows:
        return self.lookups.lookup_dir(directory) if self.lookups is not None else DirRows({})

    def _keep_rows(self, d: DirState) -> None:
        if self.cache_key and (d.rows or d.gone):
            self.news.rows.append(prepare_dir(self.cache_key, d.path, d.kept, d.rows, self.now))
        if d.touch:
            self.news.touches.append(d.path)

    def _folder_key(self) -> bytes | None:
        return self.cache_key or None

    def _folder_row(self, directory: bytes) -> FolderRow | None:
        return self.lookups.lookup_folder(directory) if self.lookups is not None else None

    def _store_folder(self, values: list[object]) -> None:
        self.news.folders += values

    def _folder_now(self) -> int:
        return self.now

    def _trusted(self) -> bool:
        return False  # the parent alone may drop rows: every reuse here checks its chunks

    def do(self, path: bytes, dev: int, whole: bool) -> DirListing:
        """``path`` with its subtree, or one level; see :class:`DirListing`."""
        self.summary, self.news, self.now = BackupSummary(), DirListing(counts={}), int(time.time())
        rejected = self.lookups.rejected if self.lookups is not None else 0
        done_files, done_bytes = self.done_files, self.done_bytes
        placeholder = Node(name=b"", kind=DIR)  # its error: the folder could not be listed
        top = DirState(path, placeholder, None)
        top.reusable = whole  # one level: the parent builds the folder, so it has no row
        news = self.news
        if whole:
            self.stack = deque([(top, None, dev)])
            news.tree_id = self._walk()
        else:
            self._one_level(top, dev)
        s = self.summary
        news.counts = {k: getattr(s, k) for k in MERGED}
        news.errors, news.inconsistent, news.skipped = s.errors, s.inconsistent, s.skipped
        news.nread, news.done_files = self.done_bytes - done_bytes, self.done_files - done_files
        news.dir_error = placeholder.error
        if self.lookups is not None:
            news.rejected = self.lookups.rejected - rejected
        return news

    def _one_level(self, top: DirState, dev: int) -> None:
        children = self._list(top, None, dev)
        for sub, _, _ in children:  # the parent lists them, or another worker does
            self._own_meta(sub, None)
        self._submit_batch()
        while top.pending > len(children):  # its files; never its subfolders
            self._drain(block=True)
        where = {id(node): i for i, node in enumerate(top.nodes)}
        self.news.nodes = top.nodes
        self.news.subdirs = [(where[id(sub.node)], sub_dev) for sub, _, sub_dev in children]
        self._keep_rows(top)


def _serve(conn: Channel) -> None:
    kind, handoff, opts, shared, lookups = conn.recv()
    if kind != "open":
        return
    claims = ChunkClaims.attach(conn.recv_fd()) if shared else None
    vault = open_handoff(handoff)
    writer = vault.writer(claims=claims)
    walker = WorkerWalker(vault, writer, opts)
    if opts.use_cache and opts.source:
        walker.cache_key = vault.local_cache_key(cache_scope(opts.source))
        if lookups:  # else a first backup: nothing to look up, and SQLite not loaded (1.9 MiB)
            from strongroom.files.cache import CacheReader

            path = cache_path(vault.vault_id, opts.source, opts.cache_root)
            walker.lookups = CacheReader(path, walker.cache_key)
    try:
        conn.send(("ready",))
        while True:
            try:
                msg: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            if msg[0] == "status":  # how many folders it has listed (procpool's check)
                conn.send(("status", walker.listed))
            elif msg[0] == "dir":
                walker.listed += 1
                failpoints.hit("procwork-dir")
                _, tag, path, dev, whole = msg
                conn.send(("dir", tag, walker.do(path, dev, whole)))
            elif msg[0] == "read":  # files of a folder the parent lists itself
                conn.send(("read", msg[1], read_for_parent(walker.reader, msg[2])))
            elif msg[0] == "flush":
                writer.flush()
                st = writer.stats
                # every index object it wrote: one each 64 packs or 32,768 entries, and the
                # flush's (only the flush's were reported until session 25; the parent checks
                # the chunks it borrowed against all of them)
                names = list(writer.index_names)
                counts = WrittenCounts(
                    st.stored_new, st.raw_new, st.chunks_new, names, writer.borrowed
                )
                conn.send(("flushed", counts))
    finally:
        if walker.lookups is not None:
            walker.lookups.close()
        walker.pool.shutdown(wait=True, cancel_futures=True)
        walker.reader.content.close()
        writer.close()
        vault.close()
        if claims is not None:
            claims.close()


def main(argv: list[str]) -> int:
    malloctune.apply()  # as the parent of a files backup does (cli/files.py)
    return serve_main(argv, _serve)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

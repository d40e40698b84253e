"""Backup worker processes started as soon as the vault is open (issue 19).

A worker process takes about 0.15 s to start (the interpreter and strongroom's modules), and a
backup starts its workers only once the walk has met ``processes_after`` entries, a third of
them files to read, so that a small or unchanged tree never pays for them.  On a first backup
of a big tree that put their start-up after the command's own (imports, key derivation,
index): 50,000 small files had one core at work for the first 0.6 s of a 2 s backup.

When the source has no files cache in this vault (a first backup, or a cache lost), nothing
will be answered from a cache, so everything the walk meets is read.  A quick look at the
paths (at most :data:`_LOOK_FOLDERS` folders listed, some milliseconds) tells whether that
is enough for workers; if so they are started at once, load their modules while the parent
loads the backup's own and the index, and wait for the vault (``procwork``'s first message).
The walk then hands them folders from its start instead of after its first
``processes_after`` entries.  An unchanged tree (a cache exists) and a small one start them
as before: late, or never.

At once means after the key derivation, not before it (sessions 22-26 started them before):
Argon2id's 32 MiB and each worker's 17-20 MiB of modules were then held together, and that
was a first backup's peak memory (a tree of 20,000 files: 72-75 MiB summed over the
processes, 65-67 with the workers started after it), for no wall time measured
(docs/benchmarks.md, "Session 27").

Workers not taken by the backup (it failed, or its vault cannot be handed over) are closed
with the :class:`WarmWorkers`: at the end of their input they exit without opening anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from strongroom.files.cachepath import cache_path
from strongroom.files.cores import process_count
from strongroom.files.longpath import Folder

if TYPE_CHECKING:
    from strongroom.files.backuptypes import BackupOptions
    from strongroom.files.workerproc import WorkerProcess

# Folders listed at most by the quick look: 2,048 in 12-16 ms (warm).  At 512 (4 ms) a tree
# of 12,500 folders of two files each looked too small (1,500 entries in its first 512
# folders), and its first backup started the workers late: 1.92 s against 1.58, CPU 3.31
# against 2.88, the parent reading with a thread until then (docs/benchmarks.md, "Session 30")
_LOOK_FOLDERS = 2048


class WarmWorkers:
    """Worker processes a backup may start early; use as a context manager around opening
    the vault and the backup (``backup_files(..., warm=)``), which :meth:`take` them."""

    def __init__(self, opts: BackupOptions) -> None:
        self.opts = opts
        self._workers: list[WorkerProcess] = []

    def begin(self, vault_id: bytes) -> None:
        """Start the workers now if this backup will want them (see the module docstring);
        ``vault_id`` names the files cache to look for."""
        opts = self.opts
        count = process_count(opts.processes, spare=1)
        if self._workers or count == 0 or not opts.paths:
            return
        if opts.use_cache and cache_path(vault_id, opts.source_name(), opts.cache_root).exists():
            return  # a later backup: the cache may answer most of the walk
        after = opts.processes_after
        if not enough_to_read(opts.paths, after, after // 3):
            return
        # loaded only now: a backup that starts no workers does not load them
        from strongroom.files.procpool import MODULE
        from strongroom.files.workerproc import WorkerProcess

        try:
            for _ in range(count):
                self._workers.append(WorkerProcess(MODULE, "backup"))
        except OSError:
            self.close()  # the backup starts its own later, and reports why they fail

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def take(self) -> list[WorkerProcess]:
        """The started workers, handed over (once)."""
        taken, self._workers = self._workers, []
        return taken

    def close(self) -> None:
        """Stop the workers not taken."""
        if self._workers:
            from strongroom.files.workerproc import close_all

            close_all(self.take())

    def __enter__(self) -> WarmWorkers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def enough_to_read(paths: Sequence[str], entries: int, files: int) -> bool:
    """Whether the trees under ``paths`` hold at least ``entries`` entries of which ``files``
    are not folders, by listing at most :data:`_LOOK_FOLDERS` folders (symlinks not
    followed; a folder that cannot be listed counts as empty: the walk reports it).  Folders
    are listed as the walk lists them, so their access times stay as they were (a point
    records them)."""
    seen = found = listed = 0
    todo = [os.fsencode(p) for p in paths]
    while todo and listed < _LOOK_FOLDERS:
        listed += 1
        try:
            with Folder(todo.pop()) as folder:  # as the walk lists: atimes left alone
                for name, entry in folder.scandir():
                    seen += 1
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(folder.join(name))
                    else:
                        found += 1
        except OSError:
            continue
        if seen >= entries and found >= files:
            return True
    return False

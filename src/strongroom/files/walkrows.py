"""The part of a files backup's walk (files/walker.py) that keeps and reuses folder rows
(files/foldercache.py): a folder whose entries match its row reuses its tree, and a folder
built without a doubt gets a row for the next backup."""

from __future__ import annotations

import os
import stat
from collections import deque
from typing import TYPE_CHECKING

from strongroom.files.backuptypes import BackupOptions, BackupSummary
from strongroom.files.dirstate import DirState, row_parts
from strongroom.files.foldercache import (
    FOLDER_COLUMNS,
    FolderRow,
    entries_digest,
    prepare_folder,
)
from strongroom.files.longpath import Folder
from strongroom.files.metadata import Names
from strongroom.files.selection import Selection
from strongroom.files.vaultview import BackupVault

if TYPE_CHECKING:
    from strongroom.files.cache import FilesCache

_FOLDERS_PER_WRITE = 256  # folder rows written to the files cache at once, or fewer of
_FOLDER_BYTES_PER_WRITE = 256 << 10  # these bytes (a row holds its files' chunk ids)


class FolderReuse:
    """Folder rows, mixed into :class:`TreeWalker`, which owns the state declared here."""

    opts: BackupOptions
    vault: BackupVault
    summary: BackupSummary
    cache: FilesCache | None
    names: Names
    salt: bytes
    trust: bool
    folder_values: list[object]
    folder_bytes: int
    done_files: int
    stack: deque[tuple[DirState, Selection | None, int]]

    if TYPE_CHECKING:  # TreeWalker's (walker.py)

        def _maybe_finalize(self, d: DirState | None) -> None: ...

        def _unlisted(self, d: DirState, exc: OSError) -> None: ...

        def _fill(
            self,
            d: DirState,
            folder: Folder,
            sel: Selection | None,
            dev: int,
            entries: list[tuple[bytes, os.stat_result]],
            done: dict[bytes, DirState] | None = None,
        ) -> list[tuple[DirState, Selection | None, int]]: ...

    def _folder_key(self) -> bytes | None:
        """The key of folder digests, when there is a files cache to keep them in."""
        return self.cache.key if self.cache is not None else None

    def _folder_row(self, directory: bytes) -> FolderRow | None:
        return self.cache.lookup_folder(directory) if self.cache is not None else None

    def _store_folder(self, values: list[object]) -> None:
        self.folder_values += values
        self.folder_bytes += sum(map(len, values[1::FOLDER_COLUMNS]))  # type: ignore[arg-type]
        if (
            len(self.folder_values) >= _FOLDERS_PER_WRITE * FOLDER_COLUMNS
            or self.folder_bytes >= _FOLDER_BYTES_PER_WRITE
        ):
            self._flush_folders()

    def _flush_folders(self) -> None:
        values, self.folder_values, self.folder_bytes = self.folder_values, [], 0
        if values and self.cache is not None:
            self.cache.store_folders(values)

    def _folder_now(self) -> int:
        return self.cache.now if self.cache is not None else 0

    def _trusted(self) -> bool:
        """Whether no chunk can have left the index since the folder rows were written (see
        :meth:`run`)."""
        return self.trust

    def _try_reuse(
        self,
        d: DirState,
        row: FolderRow,
        key: bytes,
        entries: list[tuple[bytes, os.stat_result]],
        dev: int,
    ) -> list[tuple[DirState, Selection | None, int]] | None:
        """A folder whose entries match its ``row`` (``key``: the digests'): its subfolders
        to walk, with nothing built (None: build it as usual)."""
        digest = entries_digest(key, self.salt, entries, self.names)
        if digest != row.digest or (
            not self._trusted() and self.vault.missing_chunks([row.tree, *row.chunk_ids()])
        ):  # changed, or a prune took some of its chunks: its files are read again
            # Kept for the folder's new row (_list): taken once, not twice (a folder of
            # 50,000 files, 25 ms).  Not where a symlink's read may move an atime it covers.
            if not any(stat.S_ISLNK(st.st_mode) for _, st in entries):
                d.digest = digest
            return None
        d.reuse, d.entries, d.dev = row, entries, dev
        subs = {name for name, _ in row.subs}
        prefix = d.path if d.path.endswith(b"/") else d.path + b"/"
        children: list[tuple[DirState, Selection | None, int]] = []
        for name, st in entries:
            if name not in subs:
                continue
            sub = DirState(prefix + name, None, d)
            sub.depth, sub.leaf = d.depth + 1, st.st_nlink == 2
            d.children[name] = sub
            d.pending += 1
            if self.opts.one_file_system and dev >= 0 and st.st_dev != dev:
                sub.listed = True  # a mount point: recorded, not entered
                self._maybe_finalize(sub)
            else:
                children.append((sub, None, dev))
        self._count_row(row, 1)
        d.touch = row.stale  # keep its file rows and its own row alive, once a day
        return children

    def _count_row(self, row: FolderRow, sign: int) -> None:
        s = self.summary
        s.files += sign * row.files
        s.files_unchanged += sign * row.files
        s.others += sign * row.others
        s.dirs += sign * len(row.subs)
        self.done_files += sign * row.files

    def _rebuild(self, d: DirState) -> None:
        """A folder whose entries matched its row but one of whose subfolders changed: its
        nodes, built as usual from the ``lstat`` results taken (its subfolders are done)."""
        row, done, entries = d.reuse, d.children, d.entries
        assert row is not None and entries is not None  # set together by _try_reuse
        d.reuse, d.children = None, {}
        self._count_row(row, -1)  # counted again as its entries are built
        d.listed = False  # until every entry is in: a file read meanwhile must not finish it
        try:
            folder = Folder(d.path)
        except OSError as exc:  # gone since it was listed
            self._unlisted(d, exc)
        else:
            with folder:
                self.stack.extend(reversed(self._fill(d, folder, None, d.dev, entries, done)))
        d.listed = True

    def _keep_folder(self, d: DirState, tree_id: bytes) -> None:
        """A row for a folder whose every entry was recorded without a doubt."""
        key = self._folder_key()
        if key is None or not d.clean:
            return
        digest = d.digest
        if d.entries is not None:  # a folder whose row matched, built after all
            digest = entries_digest(key, self.salt, d.entries, self.names)
        if digest is None:
            return
        parts = row_parts(d.nodes)
        if parts is None:
            return
        now = self._folder_now()
        self._store_folder(prepare_folder(key, d.path, digest, tree_id, *parts, now))

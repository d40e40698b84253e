"""Loading a vault handle's chunk index: on first use, once, and again after a prune.

A mixin of :class:`~strongroom.vault.vault.Vault`.  The index (and numpy with it) is loaded
when a chunk is first looked up: listing points needs neither, and that load was most of a
small command's cost (issue 19).  ``Vault.open`` loads it at once unless asked not to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from strongroom.errors import IntegrityError, ObjectNotFound
from strongroom.vault.catalog import LoadProblems, parallel_map
from strongroom.vault.chunks import ChunkAccess
from strongroom.vault.config import VaultConfig
from strongroom.vault.envelope import MAGIC_INDEX, check_content_name, open_object, read_checked

if TYPE_CHECKING:
    from strongroom.vault.index import ChunkIndex
    from strongroom.vault.reader import ChunkReader

# How often opening lists index/ while index objects vanish under it (a concurrent prune).
_INDEX_LISTINGS = 4


class IndexLoading(ChunkAccess):
    config: VaultConfig
    strict: bool
    _problems: LoadProblems

    def _init_index(self) -> None:
        self._index: ChunkIndex | None = None
        self._reader: ChunkReader | None = None
        self._index_names: set[str] = set()
        self._superseded: set[str] = set()
        self._index_mutex = threading.Lock()

    @property
    def index(self) -> ChunkIndex:
        return self._index if self._index is not None else self._load_once()

    @property
    def reader(self) -> ChunkReader:
        if self._reader is None:
            self._load_once()
        assert self._reader is not None
        return self._reader

    @property
    def index_names(self) -> set[str]:
        """Index objects this handle relies on: loaded at open or written since."""
        self.index  # noqa: B018 (loads it)
        return self._index_names

    @property
    def superseded(self) -> set[str]:
        """Index objects that a loaded one says it replaces (an interrupted prune's leftovers)."""
        self.index  # noqa: B018 (loads it)
        return self._superseded

    @property
    def problems(self) -> LoadProblems:
        """What failed to verify and was skipped (index problems once the index is loaded)."""
        self.index  # noqa: B018 (loads it)
        return self._problems

    @property
    def index_loaded(self) -> bool:
        return self._index is not None

    def _load_once(self) -> ChunkIndex:
        from strongroom.vault.index import ChunkIndex
        from strongroom.vault.reader import ChunkReader

        with self._index_mutex:
            if self._index is None:
                index = ChunkIndex()
                self._index_names = self._load_index(index, self.strict)
                self._reader = ChunkReader(self.backend, self.keys, index)
                self._index = index
            return self._index

    def open_index_object(self, name: str) -> bytes:
        """An index object's verified plaintext (fetched twice if the first copy is bad)."""

        def parse(stored: bytes) -> bytes:
            check_content_name(name, stored)
            return open_object(
                MAGIC_INDEX, self.keys.index_key, self.config.vault_id, stored, name=name
            )

        return read_checked(self.backend, name, parse)

    def _load_index(self, index: ChunkIndex, strict: bool) -> set[str]:
        """Load every index object into ``index``; the names of those that loaded.

        The index may load before any lock is taken, so a prune may delete an index object
        between the listing and its read.  It writes the objects that replace it first, so
        a fresh listing holds them: names that vanished are followed up by listing again.
        """
        from strongroom.vault.writer import INDEX_PREFIX

        names = [info.name for info in self.backend.list(INDEX_PREFIX)]
        loaded: set[str] = set()
        tried: set[str] = set()
        vanished: list[str] = []
        for _ in range(_INDEX_LISTINGS):
            todo = [n for n in names if n not in tried]
            tried.update(todo)
            vanished = []
            for name, problem in zip(
                todo, parallel_map(self._index_loader(index), todo), strict=True
            ):
                if problem is None:
                    loaded.add(name)
                elif isinstance(problem, ObjectNotFound):
                    vanished.append(name)
                elif strict:
                    raise problem
                else:
                    self._problems.skip("index", problem)
            if not vanished:
                break
            names = [info.name for info in self.backend.list(INDEX_PREFIX)]
        if vanished:
            problem = IntegrityError(
                f"{vanished[0]}: vanished while loading, and the index kept changing "
                f"({_INDEX_LISTINGS} listings); another client is pruning: try again",
                name=vanished[0],
            )
            if strict:
                raise problem
            self._problems.skip("index", problem)
        index.finish_bulk()
        return loaded

    def _index_loader(
        self, index: ChunkIndex
    ) -> Callable[[str], IntegrityError | ObjectNotFound | None]:
        from strongroom.vault.index import decode_index
        from strongroom.vault.writer import INDEX_PREFIX

        def load(name: str) -> IntegrityError | ObjectNotFound | None:
            try:
                packs, sup = decode_index(self.open_index_object(name), name)
            except (ObjectNotFound, IntegrityError) as exc:
                return exc
            for rec in packs:
                index.add_pack(rec.pack_id, rec.salt, rec.entries, bulk=True)
            self._superseded.update(INDEX_PREFIX + old.hex() for old in sup)
            return None

        return load

    def adopt_index(self, names: Iterable[str]) -> None:
        """Add index objects this client just wrote from another process (a backup's worker
        processes) to the loaded index, so the next backup through this handle deduplicates
        against them; nothing to do while the index is not loaded (it will list them).  Call
        with no writer active.  One that cannot be read is left out: the backup it came from
        is committed already, and a chunk missing from this handle's index only costs a
        re-read."""
        with self._index_mutex:
            index = self._index
            if index is None:
                return
            load = self._index_loader(index)  # as when opening: every row, duplicates too
            try:
                for name in names:
                    if name not in self._index_names and load(name) is None:
                        self._index_names.add(name)
            finally:
                index.finish_bulk()

    def reload_index(self) -> None:
        """Load the index afresh (after a prune or repair changed it); readers follow.

        The old index is dropped first, so memory never holds two of them.  A writer made
        before keeps adding to the old one: make new writers afterwards.
        """
        from strongroom.vault.index import ChunkIndex
        from strongroom.vault.reader import ChunkReader

        with self._index_mutex:
            self._index = self._reader = None
            self._problems.index.clear()
            self._superseded.clear()
            index = ChunkIndex()
            self._index_names = self._load_index(index, strict=False)
            self._reader = ChunkReader(self.backend, self.keys, index)
            self._index = index

"""Which paths a backup takes: the selected roots as a trie, and folders never backed up.

Selected paths are stored under their absolute paths: backing up ``/etc/hosts`` puts ``etc``
(with ``/etc``'s own metadata) in the root tree and ``hosts`` under it.  The parent part of a
path is resolved (``realpath``), the last component is not: a selected symlink is stored as a
symlink.  A path inside another selected path is covered by it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path

from strongroom.errors import FilesError
from strongroom.files.cachepath import default_cache_dir
from strongroom.files.vaultview import OnStorage
from strongroom.records import dataclass
from strongroom.storage.cacheroot import default_cache_root


@dataclass
class Selection:
    """A trie node: ``full`` means take everything below; else only the named children."""

    children: dict[bytes, Selection] = field(default_factory=dict)
    full: bool = False


def absolute(path: str | bytes) -> bytes:
    """``path`` made absolute with its parent resolved and its last component kept as is."""
    raw = os.path.abspath(os.fsencode(path))
    if raw == b"/":
        return raw
    head, tail = os.path.split(raw)
    return os.path.join(os.path.realpath(head), tail)


def build_selection(paths: Sequence[str]) -> tuple[Selection, list[str]]:
    """The trie of ``paths`` and their absolute forms; every path must exist."""
    if not paths:
        raise FilesError("no paths to back up")
    roots: list[bytes] = []
    for p in paths:
        if not p:  # not the current folder: an unset shell variable must not back up $PWD
            raise FilesError("an empty path names nothing (give . for the current folder)")
        full = absolute(p)
        try:
            os.lstat(full)
        except OSError as exc:
            raise FilesError(f"{p}: {exc.strerror or exc}") from None
        roots.append(full)
    top = Selection()
    for full in sorted(set(roots)):
        node = top
        for part in (c for c in full.split(b"/") if c):
            if node.full:
                break
            node = node.children.setdefault(part, Selection())
        else:
            node.full = True
            node.children.clear()
    return top, sorted({os.fsdecode(r) for r in roots})


def auto_excluded(vault: OnStorage, cache_root: Path | None) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of folders a backup never enters: a local vault and our caches."""
    folders: list[Path] = [default_cache_root(), default_cache_dir()]
    if cache_root is not None:
        folders.append(cache_root)
    local_root = vault.capabilities.local_root
    if local_root is not None:
        folders.append(local_root)
    found = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            st = os.stat(folder)
            found.add((st.st_dev, st.st_ino))
    return found

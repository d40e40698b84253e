"""Where a source's files cache lives (``cache.py``) and the scope of its key: apart from it,
so a backup can look for its cache before the vault is open, and a worker process make rows,
without loading SQLite (``warmstart.py``, ``procwork.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

_NAME_MAX = 200  # of a cache file's name before ".sqlite" and a ".damaged-<time>-wal" suffix


def cache_scope(source: str) -> str:
    """The scope of a source's cache key (:meth:`Vault.local_cache_key`)."""
    return "files-cache/1 " + source


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "strongroom" / "files"


def cache_path(vault_id: bytes, source: str, root: Path | None = None) -> Path:
    """``<root>/<vault id hex>/<source, quoted>.sqlite``"""
    safe = quote(source, safe="") or "_"
    if len(safe) > _NAME_MAX:  # a file name has at most 255 bytes: keep a prefix and a hash
        import blake3  # only for such names: the cache module loads it anyway

        digest = blake3.blake3(source.encode("utf-8", "surrogateescape")).hexdigest(16)
        safe = f"{safe[: _NAME_MAX - 33]}-{digest}"
    return (root or default_cache_dir()) / vault_id.hex() / f"{safe}.sqlite"

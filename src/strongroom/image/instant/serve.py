"""``strongroom serve``: a recovery point's disks as named NBD exports.

The server holds a shared vault lock for its whole life (refreshed by the lock's own thread),
so a prune, which needs the exclusive lock, waits or refuses while a point is served.  The
lock is taken before the point's maps are read, so nothing they name can vanish meanwhile.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import field
from pathlib import Path
from typing import Any

from strongroom.errors import ImageError, StrongroomError
from strongroom.image.chunkcache import DEFAULT_CACHE_BYTES, ChunkCache, open_point_disks
from strongroom.image.instant.exports import OverlayExport, PointExport
from strongroom.image.nbd.exports import Export
from strongroom.image.nbd.options import ServerTLS
from strongroom.image.nbd.server import NBDServer
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["PointServer", "ServeOptions", "export_uri"]


@dataclass
class ServeOptions:
    socket: Path | None = None
    tcp: tuple[str, int] | None = None
    writable: bool = False
    overlay_dir: Path | None = None  # None: a private temporary folder, removed at stop
    cache_bytes: int = DEFAULT_CACHE_BYTES
    disk: str | None = None  # one disk only (target, source path or file name)
    tls: ServerTLS | None = None  # clients must STARTTLS first


def export_uri(
    name: str, socket: Path | None, tcp: tuple[str, int] | None, *, tls: bool = False
) -> str:
    scheme = "nbds" if tls else "nbd"
    if socket is not None:
        return f"{scheme}+unix:///{name}?socket={socket}"
    assert tcp is not None
    host = f"[{tcp[0]}]" if ":" in tcp[0] else tcp[0]
    return f"{scheme}://{host}:{tcp[1]}/{name}"


@dataclass
class PointServer:
    """Serves ``point`` until :meth:`stop`; use as a context manager."""

    vault: Vault
    point: RecoveryPoint
    opts: ServeOptions
    exports: dict[str, Export] = field(default_factory=dict)
    _caches: list[ChunkCache] = field(default_factory=list)
    _overlays: list[OverlayExport] = field(default_factory=list)
    _lock: Any = None
    _server: NBDServer | None = None
    _tempdir: Path | None = None

    def start(self) -> PointServer:
        self._lock = self.vault.read_lock()
        try:
            disks = open_point_disks(self.vault, self.point, self.opts.disk)
            share = max(self.opts.cache_bytes // len(disks), 1)
            for disk in disks:
                cache = ChunkCache(self.vault, disk, cache_bytes=share)
                self._caches.append(cache)
                self.exports[disk.name] = self._export(disk.name, PointExport(cache))
            self._server = NBDServer(
                self.exports, self.opts.socket, tcp=self.opts.tcp, tls=self.opts.tls
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _export(self, name: str, base: PointExport) -> Export:
        if not self.opts.writable:
            return base
        folder = self.opts.overlay_dir
        if folder is None:
            if self._tempdir is None:
                self._tempdir = Path(tempfile.mkdtemp(prefix="strongroom-overlay-"))
            folder = self._tempdir
        path = folder / f"{name}.overlay"
        try:
            overlay = OverlayExport(base, path)
        except FileExistsError:
            raise ImageError(f"overlay {path} already exists: remove it first") from None
        except OSError as exc:
            raise ImageError(f"cannot create overlay {path}: {exc.strerror}") from None
        self._overlays.append(overlay)
        return overlay

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        return self._server.tcp_address if self._server is not None else None

    def uris(self) -> dict[str, str]:
        tcp = self.tcp_address
        tls = self.opts.tls is not None
        return {n: export_uri(n, self.opts.socket, tcp, tls=tls) for n in self.exports}

    def overlay_paths(self) -> list[Path]:
        return [o.path for o in self._overlays]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        for cache in self._caches:
            cache.close()
        for overlay in self._overlays:
            overlay.close()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
        if self._lock is not None:
            with contextlib.suppress(StrongroomError):
                self._lock.release()
            self._lock = None

    def __enter__(self) -> PointServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

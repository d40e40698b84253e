"""An image point as one tree of files nodes: ``/DISK/VOLUME/PATH``.

``/`` holds the point's disks (their target, ``vda``; ``disk`` for a disk point), a disk its
volumes (:mod:`.volumes`), a volume its filesystem's root.  The nodes are the files engine's
:class:`Node` with the guest entry behind them, and :class:`GuestTree` is a
:class:`TreeReader` over them, so the files engine's planner, walker and lookups work on
image points unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from strongroom.errors import GuestFilesError
from strongroom.files.metadata import kind_of
from strongroom.files.nodes import DIR, FILE, Node
from strongroom.files.tree import TreeReader
from strongroom.guestfiles.filesystems import FsEntry, GuestFS, open_fs
from strongroom.guestfiles.reader import DiskReader, ReadStats
from strongroom.guestfiles.volumes import Volume, discover
from strongroom.image.records import DiskRecord, load_point
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["GuestNode", "GuestPoint", "GuestTree"]


@dataclass(slots=True, eq=False)
class GuestNode(Node):
    """A files node with what it stands for: a disk, a volume, or a filesystem entry."""

    ref: Any = None
    fs: GuestFS | None = None
    ctime_ns: int = 0
    ino: int = 0


class GuestPoint:
    """One image point opened for browsing: disks, volumes and filesystems, opened lazily."""

    def __init__(
        self, vault: Vault, point: RecoveryPoint, luks_passphrase: bytes | None = None
    ) -> None:
        self.vault, self.point, self.passphrase = vault, point, luks_passphrase
        self.record = load_point(vault, point)
        self.stats = ReadStats()
        self._volumes: dict[str, list[Volume]] = {}
        self._fs: dict[tuple[str, str], GuestFS] = {}

    def disk_name(self, disk: DiskRecord) -> str:
        return disk.target or "disk" if self.point.manifest.kind == "vm" else "disk"

    def disks(self) -> dict[str, DiskRecord]:
        return {self.disk_name(d): d for d in self.record.disks}

    def reader(self, disk: DiskRecord) -> DiskReader:
        cmap = disk.chunk_map(self.vault)
        return DiskReader(
            self.vault, cmap, disk.chunk_size, disk.virtual_size,
            name=self.disk_name(disk), stats=self.stats,
        )  # fmt: skip

    def volumes(self, name: str) -> list[Volume]:
        vols = self._volumes.get(name)
        if vols is None:
            disk = self.disks()[name]
            fh: Any = self.reader(disk)  # a RawIOBase: the parsers take it as IO[bytes]
            vols = discover(lambda: fh, disk.virtual_size, self.passphrase)
            for vol in vols:
                self._describe(name, vol)
            self._volumes[name] = vols
        return vols

    def _describe(self, disk: str, vol: Volume) -> None:
        if vol.kind in ("lvm2-pv", "luks") or vol.error:
            return
        try:
            fs = self.filesystem(disk, vol)
        except GuestFilesError as exc:
            vol.error = str(exc)
            return
        vol.kind, vol.label, vol.uuid = fs.fstype, fs.label, fs.uuid

    def filesystem(self, disk: str, vol: Volume) -> GuestFS:
        key = (disk, vol.name)
        fs = self._fs.get(key)
        if fs is None:
            where = f"/{disk}/{vol.name}"
            if vol.kind == "luks" and vol.error == "locked":
                raise GuestFilesError(
                    f"{where}: the volume is LUKS-encrypted: give --luks-passphrase-file"
                )
            fs = self._fs[key] = open_fs(vol.open(), where)
        return fs


class GuestTree(TreeReader):
    """``TreeReader`` over an image point's guest filesystems."""

    def __init__(self, guest: GuestPoint) -> None:
        super().__init__(guest.vault)
        self.guest = guest

    def root(self) -> GuestNode:
        return GuestNode(name=b"", kind=DIR, mode=0o755, ref=("root",))

    def children(self, node: Node) -> list[Node]:
        if node.kind != DIR or not isinstance(node, GuestNode):
            return []
        what = node.ref[0]
        if what == "root":
            return [_dir(os.fsencode(n), ("disk", n)) for n in sorted(self.guest.disks())]
        if what == "disk":
            vols = self.guest.volumes(node.ref[1])
            return [_dir(os.fsencode(v.name), ("vol", node.ref[1], v)) for v in vols if _fs(v)]
        if what == "vol":
            fs = self.guest.filesystem(node.ref[1], node.ref[2])
            root = _from_entry(fs.root(), fs)
            return self.children(root) if root is not None else []
        assert node.fs is not None
        kids = [_from_entry(e, node.fs) for e in node.fs.children(node.ref[1])]
        return sorted((k for k in kids if k is not None), key=lambda n: n.name)


def _fs(vol: Volume) -> bool:
    """A volume that may hold a filesystem (containers are listed, not entered)."""
    return vol.kind not in ("lvm2-pv", "luks") or vol.error == "locked"


def _dir(name: bytes, ref: tuple[Any, ...]) -> GuestNode:
    return GuestNode(name=name, kind=DIR, mode=0o755, ref=ref)


def _from_entry(e: FsEntry, fs: GuestFS) -> GuestNode | None:
    kind = kind_of(e.kind)
    if kind is None:  # sockets: nothing to restore
        return None
    node = GuestNode(
        name=e.name,
        kind=kind,
        mode=e.mode,
        uid=e.uid,
        gid=e.gid,
        mtime_ns=e.mtime_ns,
        atime_ns=e.atime_ns,
        size=e.size,
        extents=e.extents,
        target=e.target,
        rdev=e.rdev,
        xattrs=e.xattrs,
        ref=("entry", e),
        fs=fs,
        ctime_ns=e.ctime_ns,
        ino=e.ino,
    )
    if kind == FILE and e.nlink > 1:
        node.link = f"{id(fs)}:{e.ino}"
    return node

"""An image point as one tree of files nodes: ``/DISK/VOLUME/PATH``.

``/`` holds the point's disks (their target, ``vda``; ``disk`` for a disk point), a disk its
volumes (:mod:`.volumes`), a volume its filesystem's root.  The nodes are the files engine's
:class:`Node` with the guest entry behind them, and :class:`GuestTree` is a
:class:`TreeReader` over them, so the files engine's planner, walker and lookups work on
image points unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from strongroom.errors import GuestFilesError
from strongroom.files.metadata import kind_of
from strongroom.files.nodes import DIR, FILE, Node
from strongroom.files.tree import TreeReader, split_path
from strongroom.guestfiles.filesystems import (
    NO_FILESYSTEM,
    FsEntry,
    GuestFS,
    damage_errors,
    open_fs,
)
from strongroom.guestfiles.reader import DiskReader, ReadStats
from strongroom.guestfiles.volumes import Volume, discover
from strongroom.image.chunkmap import ChunkMap
from strongroom.image.records import DiskRecord, load_point
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint, Vault

__all__ = ["GuestNode", "GuestPoint", "GuestTree"]


@dataclass(slots=True, eq=False)
class GuestNode(Node):
    """A files node with what it stands for: a disk, a volume, or a filesystem entry."""

    ref: Any = None
    fs: GuestFS | None = None
    ctime_ns: int = 0
    ino: int = 0
    where: bytes = b"/"  # the node's path in the point, for error reports
    # where the entry lives: content comparison by chunk ids (guestfiles.browse)
    guest: GuestPoint | None = None
    disk: str = ""
    volume: Volume | None = None


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
        self._maps: dict[str, tuple[ChunkMap, int]] = {}
        self._readers: dict[str, DiskReader] = {}

    def disk_name(self, disk: DiskRecord) -> str:
        return disk.target or "disk" if self.point.manifest.kind == "vm" else "disk"

    def disks(self) -> dict[str, DiskRecord]:
        return {self.disk_name(d): d for d in self.record.disks}

    def reader(self, disk: DiskRecord) -> DiskReader:
        cmap, _ = self.chunk_map(self.disk_name(disk))
        return DiskReader(
            self.vault, cmap, disk.chunk_size, disk.virtual_size,
            name=self.disk_name(disk), stats=self.stats,
        )  # fmt: skip

    def disk_reader(self, name: str) -> DiskReader:
        """The one cached reader of a disk (its volumes and filesystems read through it)."""
        got = self._readers.get(name)
        if got is None:
            got = self._readers[name] = self.reader(self.disks()[name])
        return got

    def chunk_map(self, name: str) -> tuple[ChunkMap, int]:
        """A disk's chunk map and chunk size (loaded once)."""
        got = self._maps.get(name)
        if got is None:
            disk = self.disks()[name]
            got = self._maps[name] = (disk.chunk_map(self.vault), disk.chunk_size)
        return got

    @staticmethod
    def disk_offset(vol: Volume) -> int | None:
        """Where a volume starts on its disk: known for partitions and the bare disk, not
        for what lies inside LVM or LUKS."""
        if vol.name == "whole" or (vol.name[:1] == "p" and vol.name[1:].isdigit()):
            return vol.offset
        return None

    def volumes(self, name: str) -> list[Volume]:
        vols = self._volumes.get(name)
        if vols is None:
            disk = self.disks()[name]
            fh: Any = self.disk_reader(name)  # a RawIOBase: parsers take it as IO[bytes]
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
    """``TreeReader`` over an image point's guest filesystems.

    ``strict`` (``ls``): an unreadable volume or directory raises.  Otherwise (``find``,
    ``diff``, ``restore``) walks go on: volumes without a filesystem (swap, empty) are left
    out and noted in ``notes``, directories that cannot be read are recorded in ``failures``
    (path, reason) and read as empty, so the rest is still found and restored.
    """

    def __init__(self, guest: GuestPoint, strict: bool = True) -> None:
        super().__init__(guest.vault)
        self.guest, self.strict = guest, strict
        self.failures: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []

    def root(self) -> GuestNode:
        return GuestNode(name=b"", kind=DIR, mode=0o755, ref=("root",))

    def lookup(self, root: Node, path: bytes | str) -> Node | None:
        """As the files engine's, but a volume named in the path that cannot be read says
        why (rather than "not in the point")."""
        parts = split_path(path)
        if len(parts) >= 2:
            disk = os.fsdecode(parts[0])
            if disk in self.guest.disks():
                vol = next(
                    (v for v in self.guest.volumes(disk) if v.name == os.fsdecode(parts[1])), None
                )
                if vol is not None:
                    self.guest.filesystem(disk, vol)  # raises with the reason
        return super().lookup(root, path)

    def children(self, node: Node) -> list[Node]:
        if node.kind != DIR or not isinstance(node, GuestNode):
            return []
        what = node.ref[0]
        if what == "root":
            return [_dir(os.fsencode(n), ("disk", n), b"/" + os.fsencode(n))
                    for n in sorted(self.guest.disks())]  # fmt: skip
        if what == "disk":
            return self._volumes(node)
        try:
            return self._entries(node)
        except damage_errors() as exc:
            if self.strict and isinstance(exc, GuestFilesError):
                raise
            if self.strict:
                raise GuestFilesError(f"{os.fsdecode(node.where)}: cannot be read: {exc}") from None
            where, reason = os.fsdecode(node.where), str(exc)
            if node.ref[0] == "vol":  # the reason names the volume already
                kept = self.notes if NO_FILESYSTEM in reason else self.failures
                kept.append((where, reason.removeprefix(where + ": ")))
            else:
                self.failures.append((where, f"cannot be read: {reason}"))
            return []

    def _volumes(self, node: GuestNode) -> list[Node]:
        disk = node.ref[1]
        found: list[Node] = []
        for v in self.guest.volumes(disk):
            if not _fs(v):
                continue
            where = node.where + b"/" + os.fsencode(v.name)
            found.append(_dir(os.fsencode(v.name), ("vol", disk, v), where))
        return found

    def _entries(self, node: GuestNode) -> list[Node]:
        if node.ref[0] == "vol":
            fs = self.guest.filesystem(node.ref[1], node.ref[2])
            node.guest, node.disk, node.volume = self.guest, node.ref[1], node.ref[2]
            root = _from_entry(fs.root(), fs, node)
            return self._entries(root) if root is not None else []
        assert node.fs is not None
        kids = [_from_entry(e, node.fs, node) for e in node.fs.children(node.ref[1])]
        return sorted((k for k in kids if k is not None), key=lambda n: n.name)


def _fs(vol: Volume) -> bool:
    """A volume that may hold a filesystem (containers are listed, not entered)."""
    return vol.kind not in ("lvm2-pv", "luks") or vol.error == "locked"


def _dir(name: bytes, ref: tuple[Any, ...], where: bytes) -> GuestNode:
    return GuestNode(name=name, kind=DIR, mode=0o755, ref=ref, where=where)


def _from_entry(e: FsEntry, fs: GuestFS, parent: GuestNode) -> GuestNode | None:
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
        where=os.path.join(parent.where, e.name) if e.name else parent.where,
        guest=parent.guest,
        disk=parent.disk,
        volume=parent.volume,
    )
    if kind == FILE and e.nlink > 1:
        node.link = f"{id(fs)}:{e.ino}"
    return node

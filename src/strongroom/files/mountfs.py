"""A files point as a read-only file system, without FUSE: what ``files/mount.py`` serves.

Paths resolve through the point's trees (one name table per directory, cached); a file is
read at any offset by reading only the chunks that cover the range asked for: a file's
chunks lie back to back over its data extents, so their sizes (from the vault's index, no
read) place each one, and the gaps between extents read as zeros.  Chunks read are kept in
a small LRU cache (a reader going through a file asks for 128 KiB at a time, several per
chunk).  Inode numbers are given as paths are first met, one per hard link group, so
``ls -i`` shows hard links as one file.
"""

from __future__ import annotations

import bisect
import os
import stat
from collections import OrderedDict

from strongroom.errors import FilesError
from strongroom.files.nodes import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Node, decode_dir
from strongroom.files.tree import root_node
from strongroom.files.vaultview import MountVault
from strongroom.records import dataclass
from strongroom.vault import RecoveryPoint

_TYPE_BITS = {
    FILE: stat.S_IFREG,
    DIR: stat.S_IFDIR,
    SYMLINK: stat.S_IFLNK,
    FIFO: stat.S_IFIFO,
    CHARDEV: stat.S_IFCHR,
    BLOCKDEV: stat.S_IFBLK,
}
_CACHE_DIRS = 1024
CHUNK_CACHE_BYTES = 64 << 20
BLOCK = 512


class NotFound(FilesError):
    """No such entry in the point (the file system answers ENOENT)."""


@dataclass(slots=True)
class ChunkMap:
    """Where a file's chunks lie: ``starts[i]`` is chunk i's offset in the file's data
    (its extents put end to end); ``extents`` the file's data extents with their offsets in
    that data."""

    chunks: list[bytes]
    starts: list[int]
    extents: list[tuple[int, int, int]]  # (file offset, length, data offset)


class MountTree:
    """Lookups and attributes of a tree served read-only (single-threaded); a subclass says
    how a directory's entries are listed and a file read."""

    def __init__(self, root: Node) -> None:
        self.root = root
        self._inodes: dict[object, int] = {b"/": 1}

    def entries(self, node: Node) -> dict[bytes, Node]:
        raise NotImplementedError

    def read(self, handle: int, node: Node, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` of the file ``node`` opened as ``handle``."""
        raise NotImplementedError

    def forget(self, handle: int) -> None:
        """The file opened as ``handle`` was closed."""

    def lookup(self, path: bytes) -> Node:
        node = self.root
        for part in path.split(b"/"):
            if not part:
                continue
            if node.kind != DIR:
                raise NotFound(os.fsdecode(path))
            found = self.entries(node).get(part)
            if found is None:
                raise NotFound(os.fsdecode(path))
            node = found
        return node

    def inode(self, path: bytes, node: Node) -> int:
        """A number stable for this mount: per path, or per hard link group."""
        key: object = ("link", node.link) if node.link and node.kind == FILE else path
        ino = self._inodes.get(key)
        if ino is None:
            ino = self._inodes[key] = len(self._inodes) + 1
        return ino

    def attrs(self, path: bytes, node: Node) -> dict[str, int]:
        """``stat`` fields: times in ns; a hard linked file shows 2 links (the tree keeps
        the group, not its size)."""
        linked = node.kind == FILE and bool(node.link)
        return {
            "st_mode": _TYPE_BITS[node.kind] | node.mode,
            "st_ino": self.inode(path, node),
            "st_nlink": 2 if node.kind == DIR or linked else 1,
            "st_uid": node.uid,
            "st_gid": node.gid,
            "st_size": len(node.target) if node.target is not None else node.size,
            "st_blocks": -(-sum(length for _, length in node.data_extents()) // BLOCK)
            if node.kind == FILE
            else 0,
            "st_blksize": 4096,
            "st_rdev": node.rdev,
            "st_atime": node.atime_ns,
            "st_mtime": node.mtime_ns,
            "st_ctime": node.mtime_ns,
        }


class PointFS(MountTree):
    """A files point: its trees, and its files read by chunk."""

    def __init__(self, vault: MountVault, point: RecoveryPoint) -> None:
        super().__init__(root_node(point))
        self.vault = vault
        when = int(point.manifest.timestamp.timestamp()) * 1_000_000_000
        self.root.mtime_ns = self.root.atime_ns = when  # the root has no node: the point's time
        self._dirs: OrderedDict[bytes, dict[bytes, Node]] = OrderedDict()
        self._maps: dict[int, ChunkMap] = {}
        self._chunks: OrderedDict[bytes, bytes] = OrderedDict()
        self._cached = 0

    def entries(self, node: Node) -> dict[bytes, Node]:
        """``node``'s children by name (``node`` a directory)."""
        if node.subtree is None:
            return {}
        kids = self._dirs.get(node.subtree)
        if kids is not None:
            self._dirs.move_to_end(node.subtree)
            return kids
        refs, body = self.vault.read_tree(node.subtree)
        kids = {n.name: n for n in decode_dir(refs, body, node.subtree)}
        self._dirs[node.subtree] = kids
        if len(self._dirs) > _CACHE_DIRS:
            self._dirs.popitem(last=False)
        return kids

    # --- reading files

    def chunk_map(self, ino: int, node: Node) -> ChunkMap:
        """``node``'s chunk map (kept while the file is open: ``forget`` drops it)."""
        found = self._maps.get(ino)
        if found is not None:
            return found
        starts, at = [], 0
        for cid, where in self.vault.locate(node.chunks):
            if where is None:
                raise FilesError(f"chunk {cid.hex()[:16]} is not in the vault's index")
            starts.append(at)
            at += where.raw
        extents, data = [], 0
        for offset, length in node.data_extents():
            extents.append((offset, length, data))
            data += length
        if at < data:
            raise FilesError(f"{os.fsdecode(node.name)}: its chunks end before its data")
        self._maps[ino] = found = ChunkMap(list(node.chunks), starts, extents)
        return found

    def forget(self, ino: int) -> None:
        self._maps.pop(ino, None)

    def read(self, ino: int, node: Node, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file)."""
        end = min(offset + size, node.size)
        if offset >= end:
            return b""
        cmap = self.chunk_map(ino, node)
        out = bytearray(end - offset)  # holes stay zeros
        for start, length, data in cmap.extents:
            lo, hi = max(start, offset), min(start + length, end)
            if lo < hi:
                self._fill(cmap, out, lo - offset, data + lo - start, hi - lo)
        return bytes(out)

    def _fill(self, cmap: ChunkMap, out: bytearray, at: int, data: int, count: int) -> None:
        """Copy ``count`` bytes of the file's data from ``data`` on into ``out[at:]``."""
        i = bisect.bisect_right(cmap.starts, data) - 1
        while count > 0:
            chunk = self._chunk(cmap.chunks[i])
            skip = data - cmap.starts[i]
            piece = chunk[skip : skip + count]
            if not piece:
                raise FilesError("a chunk is shorter than the index says")
            out[at : at + len(piece)] = piece
            at, data, count, i = at + len(piece), data + len(piece), count - len(piece), i + 1

    def _chunk(self, cid: bytes) -> bytes:
        data = self._chunks.get(cid)
        if data is not None:
            self._chunks.move_to_end(cid)
            return data
        data = self.vault.read_chunk(cid)
        self._chunks[cid] = data
        self._cached += len(data)
        while self._cached > CHUNK_CACHE_BYTES and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            self._cached -= len(old)
        return data

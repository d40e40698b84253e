"""XFS through dissect.xfs, with what it leaves out: extended attributes (short form, leaf and
node attribute forks, remote values), POSIX ACLs in XFS's own encoding, device numbers,
unwritten (preallocated) extents, which read as zeros."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from typing import Any, Final

from strongroom.errors import GuestFilesError
from strongroom.guestfiles.filesystems import FsEntry, Stream, byte_runs, runs_to_extents

_LOCAL, _EXTENTS, _BTREE = 1, 2, 3  # xfs_dinode_fmt
_ATTR_LOCAL, _ATTR_ROOT, _ATTR_SECURE, _ATTR_PARENT, _ATTR_INCOMPLETE = 1, 2, 4, 8, 0x80
# attr leaf block magic -> (offset of the entry count, header size), v4 and v5
_LEAF_MAGICS: Final = {0xFBEE: (12, 32), 0x3BEE: (56, 80)}
_RMT_MAGIC: Final = 0x5841524D  # "XARM": the header of a v5 remote value block
_RMT_HDR: Final = 56
# XFS keeps POSIX ACLs as root-namespace attributes in its own big-endian form.
_XFS_ACLS: Final = {b"SGI_ACL_FILE": "system.posix_acl_access",
                    b"SGI_ACL_DEFAULT": "system.posix_acl_default"}  # fmt: skip


class XfsFs:
    fstype = "xfs"

    def __init__(self, fh: Stream) -> None:
        from dissect.xfs import XFS

        self._fs = XFS(fh)
        self.label = self._fs.name
        self.uuid = str(self._fs.uuid)
        self.block_size: int = self._fs.block_size
        self._v5 = self._fs.version == 5

    def root(self) -> FsEntry:
        return self._entry(b"", self._fs.root)

    def children(self, entry: FsEntry) -> list[FsEntry]:
        return [
            self._entry(os.fsencode(inode.filename), inode)
            for inode in entry.handle.iterdir()
            if inode.filename not in (".", "..")
        ]

    def open(self, entry: FsEntry) -> Stream:
        from dissect.util.stream import RunlistStream

        inode = entry.handle
        if inode.inode.di_format == _LOCAL:
            stream: Stream = inode.datafork()
            return stream
        runs = self._runs(inode)
        out: Stream = RunlistStream(self._fs.fh, runs, inode.size, self.block_size)
        return out

    def volume_runs(self, entry: FsEntry) -> list[tuple[int, int]] | None:
        inode = entry.handle
        if entry.kind != stat.S_IFREG or inode.inode.di_format == _LOCAL:
            return None
        return byte_runs(self._runs(inode), self.block_size)

    def _entry(self, name: bytes, inode: Any) -> FsEntry:
        raw = inode.inode
        kind = stat.S_IFMT(raw.di_mode)
        e = FsEntry(
            name=name, kind=kind, mode=raw.di_mode & 0o7777, uid=raw.di_uid, gid=raw.di_gid,
            mtime_ns=inode.mtime_ns, atime_ns=inode.atime_ns, ctime_ns=inode.ctime_ns,
            ino=inode.inum, nlink=raw.di_nlink if raw.di_version > 1 else raw.di_onlink,
            handle=inode,
        )  # fmt: skip
        if kind == stat.S_IFREG:
            e.size = inode.size
            # as many blocks as the size needs (or more): no holes, no extent list to read
            whole = raw.di_nblocks * self.block_size >= inode.size
            if raw.di_format != _LOCAL and inode.size and not whole:
                e.extents = runs_to_extents(self._runs(inode), self.block_size, inode.size)
        elif kind == stat.S_IFLNK:
            e.target = os.fsencode(inode.link)
            e.size = len(e.target)
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            (dev,) = struct.unpack(">I", inode.datafork().read(4))
            e.rdev = os.makedev(dev >> 18, dev & 0x3FFFF)
        if raw.di_forkoff:
            e.xattrs = tuple(sorted(self._xattrs(inode)))
        return e

    def _extents(self, inode: Any, fork: Stream, fmt: int, count: int) -> Iterator[Any]:
        """(logical block, fs block, count, unwritten) of a fork in extents or btree form."""
        from dissect.xfs.c_xfs import c_xfs
        from dissect.xfs.xfs import parse_fsblock

        if fmt == _EXTENTS:
            buf = fork.read(count * 16)
            for i in range(count):
                yield parse_fsblock(buf[i * 16 : (i + 1) * 16])
        elif fmt == _BTREE:
            root = c_xfs.xfs_bmdr_block(fork)
            maxrecs = (fork.size - 4) // 16  # type: ignore[attr-defined]
            fork.seek(4 + maxrecs * 8)
            for ptr in c_xfs.uint64[root.bb_numrecs](fork):
                yield from inode.ag.walk_extents(ptr)

    def _abs(self, fsb: int) -> int:
        log, per_ag = int(self._fs.sb.sb_agblklog), int(self._fs.sb.sb_agblocks)
        return (fsb >> log) * per_ag + (fsb & ((1 << log) - 1))

    def _runs(self, inode: Any) -> list[tuple[int | None, int]]:
        """Data runs in blocks; unwritten extents are holes (they read as zeros)."""
        raw = inode.inode
        fork = inode.datafork()
        runs: list[tuple[int | None, int]] = []
        at = 0
        for offset, block, count, unwritten in self._extents(
            inode, fork, raw.di_format, inode.data_extents
        ):
            if offset > at:
                runs.append((None, offset - at))
            runs.append((None if unwritten else self._abs(block), count))
            at = offset + count
        need = -(-inode.size // self.block_size)
        if at < need:
            runs.append((None, need - at))
        return runs

    # --- extended attributes -------------------------------------------------------------

    def _xattrs(self, inode: Any) -> Iterator[tuple[str, bytes]]:
        raw = inode.inode
        fork = inode.attrfork()
        if raw.di_aformat == _LOCAL:
            found = _shortform(fork.read())
        else:
            blocks = self._attr_blocks(inode, fork, raw.di_aformat, inode.attr_extents)
            found = self._leaves(blocks)
        for flags, name, value in found:
            if flags & (_ATTR_PARENT | _ATTR_INCOMPLETE):
                continue  # parent pointers are the filesystem's, not the file's
            yield _xattr(flags, name, value)

    def _attr_blocks(self, inode: Any, fork: Stream, fmt: int, count: int) -> dict[int, bytes]:
        """The attribute fork's blocks by logical block number."""
        fh, bs = self._fs.fh, self.block_size
        blocks: dict[int, bytes] = {}
        for offset, block, n, _ in self._extents(inode, fork, fmt, count):
            fh.seek(self._abs(block) * bs)
            data = fh.read(n * bs)
            for i in range(n):
                blocks[offset + i] = data[i * bs : (i + 1) * bs]
        return blocks

    def _leaves(self, blocks: dict[int, bytes]) -> Iterator[tuple[int, bytes, bytes]]:
        for data in blocks.values():
            (magic,) = struct.unpack_from(">H", data, 8)
            layout = _LEAF_MAGICS.get(magic)
            if layout is None:
                continue  # a node block of the attribute b-tree, or a remote value
            (count,) = struct.unpack_from(">H", data, layout[0])
            header = layout[1]
            yield from self._leaf_entries(data, header, count, blocks)

    def _leaf_entries(
        self, data: bytes, header: int, count: int, blocks: dict[int, bytes]
    ) -> Iterator[tuple[int, bytes, bytes]]:
        for i in range(count):
            _, nameidx, flags = struct.unpack_from(">IHB", data, header + 8 * i)
            if flags & _ATTR_LOCAL:
                valuelen, namelen = struct.unpack_from(">HB", data, nameidx)
                name = data[nameidx + 3 : nameidx + 3 + namelen]
                value = data[nameidx + 3 + namelen : nameidx + 3 + namelen + valuelen]
            else:
                valueblk, valuelen, namelen = struct.unpack_from(">IIB", data, nameidx)
                name = data[nameidx + 9 : nameidx + 9 + namelen]
                value = self._remote(blocks, valueblk, valuelen)
            yield flags, name, value

    def _remote(self, blocks: dict[int, bytes], first: int, length: int) -> bytes:
        parts, got, blk = [], 0, first
        while got < length:
            data = blocks.get(blk)
            if data is None:
                raise GuestFilesError(f"xfs: attribute value block {blk} missing")
            if self._v5:
                magic, _, nbytes = struct.unpack_from(">III", data)
                if magic != _RMT_MAGIC:
                    raise GuestFilesError(f"xfs: bad remote attribute block {blk}")
                data = data[_RMT_HDR : _RMT_HDR + nbytes]
            parts.append(data[: length - got])
            got += len(parts[-1])
            blk += 1
        return b"".join(parts)


def _shortform(fork: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    _, count = struct.unpack_from(">HB", fork)
    pos = 4
    for _ in range(count):
        namelen, valuelen, flags = struct.unpack_from(">BBB", fork, pos)
        name = fork[pos + 3 : pos + 3 + namelen]
        value = fork[pos + 3 + namelen : pos + 3 + namelen + valuelen]
        pos += 3 + namelen + valuelen
        yield flags, name, value


def _xattr(flags: int, name: bytes, value: bytes) -> tuple[str, bytes]:
    if flags & _ATTR_ROOT and name in _XFS_ACLS:
        return _XFS_ACLS[name], _acl(value)
    prefix = "trusted." if flags & _ATTR_ROOT else "security." if flags & _ATTR_SECURE else "user."
    return prefix + os.fsdecode(name), value


def _acl(value: bytes) -> bytes:
    """xfs_acl (count, then tag/id/perm big-endian) -> the kernel's xattr form."""
    if len(value) < 4:
        raise GuestFilesError("malformed XFS POSIX ACL")
    (count,) = struct.unpack_from(">I", value)
    out = [struct.pack("<I", 2)]
    for i in range(count):
        if 4 + 12 * (i + 1) > len(value):
            raise GuestFilesError("malformed XFS POSIX ACL")
        tag, ident, perm = struct.unpack_from(">IIH", value, 4 + 12 * i)
        out.append(struct.pack("<HHI", tag, perm, ident if tag in (2, 8) else 0xFFFFFFFF))
    return b"".join(out)

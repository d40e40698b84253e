"""An image point served by ``strongroom mount``: ``/DISK/VOLUME/PATH`` as ``ls`` shows it.

Listings come from :class:`GuestTree` (cached by directory: the filesystem parsers list a
folder by reading it), a file's bytes from its guest filesystem, whose disk reader fetches
only the image chunks a read touches.  Entries of a filesystem keep its inode numbers' hard
link groups (``GuestNode.link``).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import IO

from strongroom.errors import GuestFilesError
from strongroom.files.mountfs import MountTree
from strongroom.files.nodes import Node
from strongroom.guestfiles.tree import GuestNode, GuestPoint, GuestTree

_CACHE_DIRS = 1024
# what the filesystem parsers raise on a damaged filesystem (as guestfiles/restore.py)
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError)


def _key(node: GuestNode) -> object:
    what = node.ref[0]
    if what == "entry":
        return (id(node.fs), node.ino)
    if what == "vol":
        return ("vol", node.ref[1], node.ref[2].name)
    return node.ref


class GuestMountTree(MountTree):
    def __init__(self, guest: GuestPoint) -> None:
        self.tree = GuestTree(guest)
        root = self.tree.root()
        when = int(guest.point.manifest.timestamp.timestamp()) * 1_000_000_000
        root.mtime_ns = root.atime_ns = when
        super().__init__(root)
        self._dirs: OrderedDict[object, dict[bytes, Node]] = OrderedDict()
        self._open: dict[int, IO[bytes]] = {}

    def entries(self, node: Node) -> dict[bytes, Node]:
        assert isinstance(node, GuestNode)
        key = _key(node)
        kids = self._dirs.get(key)
        if kids is not None:
            self._dirs.move_to_end(key)
            return kids
        try:
            kids = {k.name: k for k in self.tree.children(node)}
        except _READ_ERRORS as exc:
            raise GuestFilesError(f"{os.fsdecode(node.name)}: cannot list it ({exc})") from None
        self._dirs[key] = kids
        if len(self._dirs) > _CACHE_DIRS:
            self._dirs.popitem(last=False)
        return kids

    def read(self, handle: int, node: Node, size: int, offset: int) -> bytes:
        assert isinstance(node, GuestNode) and node.fs is not None
        try:
            stream = self._open.get(handle)
            if stream is None:
                stream = self._open[handle] = node.fs.open(node.ref[1])
            stream.seek(offset)
            return stream.read(max(0, min(size, node.size - offset)))
        except _READ_ERRORS as exc:
            raise GuestFilesError(f"{os.fsdecode(node.name)}: cannot read it ({exc})") from None

    def forget(self, handle: int) -> None:
        stream = self._open.pop(handle, None)
        if stream is not None:
            stream.close()

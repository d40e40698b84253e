"""strongroom's own NBD (Network Block Device) client and server, plus a qemu-nbd runner.

The client reads and writes disk images served by qemu-nbd (any format qemu knows) with
pipelined requests and block status (allocation, dirty bitmaps); the server exposes
strongroom data (later: recovery points, for instant recovery) to NBD clients such as
qemu-img, qemu-io and the libnbd tools (nbdinfo, nbdcopy), which the tests run against it.

Names load on first use (:mod:`strongroom.lazyexports`): a backup needs the client and the
qemu-nbd runner, not the server.
"""

from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports

if TYPE_CHECKING:
    from strongroom.image.nbd.client import NBDClient
    from strongroom.image.nbd.exports import Export, FileExport, Hole, MemoryExport, ReadPiece
    from strongroom.image.nbd.negotiate import Address, ExportInfo, list_exports_at
    from strongroom.image.nbd.protocol import (
        BASE_ALLOCATION,
        STATE_DIRTY,
        STATE_HOLE,
        STATE_ZERO,
        BlockSize,
        Extent,
        NBDCommandError,
    )
    from strongroom.image.nbd.qemu import QemuNBD, qemu_nbd_path
    from strongroom.image.nbd.server import NBDServer

_HOME = {
    "Address": "negotiate",
    "BASE_ALLOCATION": "protocol",
    "BlockSize": "protocol",
    "Export": "exports",
    "ExportInfo": "negotiate",
    "Extent": "protocol",
    "FileExport": "exports",
    "Hole": "exports",
    "MemoryExport": "exports",
    "NBDClient": "client",
    "NBDCommandError": "protocol",
    "NBDServer": "server",
    "QemuNBD": "qemu",
    "ReadPiece": "exports",
    "STATE_DIRTY": "protocol",
    "STATE_HOLE": "protocol",
    "STATE_ZERO": "protocol",
    "list_exports_at": "negotiate",
    "qemu_nbd_path": "qemu",
}

__all__ = [
    "BASE_ALLOCATION",
    "STATE_DIRTY",
    "STATE_HOLE",
    "STATE_ZERO",
    "Address",
    "BlockSize",
    "Export",
    "ExportInfo",
    "Extent",
    "FileExport",
    "Hole",
    "MemoryExport",
    "NBDClient",
    "NBDCommandError",
    "NBDServer",
    "QemuNBD",
    "ReadPiece",
    "list_exports_at",
    "qemu_nbd_path",
]

__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)

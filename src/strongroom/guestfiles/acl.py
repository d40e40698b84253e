"""POSIX ACLs as filesystems store them, turned into the ``system.posix_acl_*`` xattr value
the kernel takes (``posix_acl_xattr``: version 2, then tag u16, perm u16, id u32 per entry).

ext2/3/4 keep a compact form on disk (version 1, no id for the entries that name the owner,
the owning group, the mask and others).
"""

from __future__ import annotations

import struct
from typing import Final

from strongroom.errors import GuestFilesError

POSIX_ACL_NAMES: Final = ("system.posix_acl_access", "system.posix_acl_default")
_XATTR_VERSION: Final = 2
_EXT4_VERSION: Final = 1
_UNDEFINED_ID: Final = 0xFFFFFFFF
_USER, _GROUP = 0x02, 0x08  # the entries that carry an id


def ext4_to_xattr(value: bytes) -> bytes:
    """ext4's on-disk ACL -> the xattr form (raises GuestFilesError when malformed)."""
    if len(value) < 4 or struct.unpack_from("<I", value)[0] != _EXT4_VERSION:
        raise GuestFilesError("malformed ext4 POSIX ACL")
    out = [struct.pack("<I", _XATTR_VERSION)]
    pos = 4
    while pos < len(value):
        if pos + 4 > len(value):
            raise GuestFilesError("malformed ext4 POSIX ACL")
        tag, perm = struct.unpack_from("<HH", value, pos)
        if tag in (_USER, _GROUP):
            if pos + 8 > len(value):
                raise GuestFilesError("malformed ext4 POSIX ACL")
            (ident,) = struct.unpack_from("<I", value, pos + 4)
            pos += 8
        else:
            ident = _UNDEFINED_ID
            pos += 4
        out.append(struct.pack("<HHI", tag, perm, ident))
    return b"".join(out)

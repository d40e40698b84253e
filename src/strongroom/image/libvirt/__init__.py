"""The libvirt provider: agentless backups of running and shut-off libvirt/KVM domains with
checkpoints and dirty bitmaps, guest-agent freezes, and restores into libvirt.

libvirt-python is imported only when a connection is opened (``conn.py``), so importing this
package works without it.  See ``docs/libvirt.md``.
"""

from strongroom.image.libvirt.backup import LibvirtOptions, backup_domain
from strongroom.image.libvirt.conn import DEFAULT_URI, Connection, LibvirtError, default_uri
from strongroom.image.libvirt.provider import LibvirtProvider

__all__ = [
    "DEFAULT_URI",
    "Connection",
    "LibvirtError",
    "LibvirtOptions",
    "LibvirtProvider",
    "backup_domain",
    "default_uri",
]

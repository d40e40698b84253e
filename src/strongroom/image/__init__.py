"""Image-level (agentless) backup and restore of VMs and disk images.

The public surface: :func:`backup_vm` / :func:`backup_disk` (offline: domain XML plus the
images it names, or one image), and the three restores :func:`restore_vm_in_place`,
:func:`restore_vm_as_new` and :func:`restore_disk`.  Disk I/O goes through
:mod:`strongroom.image.nbd` (qemu-nbd for every format qemu reads) or directly for raw
images; see ``docs/image.md``.
"""

from strongroom.image.backup import (
    DEFAULT_CHUNK_SIZE,
    BackupOptions,
    BackupSummary,
    backup_disk,
    backup_vm,
)
from strongroom.image.formats import READ_FORMATS, WRITE_FORMATS
from strongroom.image.records import DiskRecord, VMRecord, load_point
from strongroom.image.restore import DiskResult, RestoreOptions
from strongroom.image.vmrestore import (
    RestoreSummary,
    restore_disk,
    restore_vm_as_new,
    restore_vm_in_place,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "READ_FORMATS",
    "WRITE_FORMATS",
    "BackupOptions",
    "BackupSummary",
    "DiskRecord",
    "DiskResult",
    "RestoreOptions",
    "RestoreSummary",
    "VMRecord",
    "backup_disk",
    "backup_vm",
    "load_point",
    "restore_disk",
    "restore_vm_as_new",
    "restore_vm_in_place",
]

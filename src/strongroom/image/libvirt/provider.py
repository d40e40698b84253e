"""The libvirt implementation of :class:`strongroom.image.provider.VMProvider`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strongroom.image.backup import BackupOptions, BackupSummary, Progress
from strongroom.image.libvirt.backup import LibvirtOptions, backup_domain
from strongroom.image.libvirt.conn import Connection
from strongroom.image.libvirt.listing import VMRow, list_vms
from strongroom.image.libvirt.restore import (
    attach_restored_disk,
    restore_domain_as_new,
    restore_domain_in_place,
)
from strongroom.image.restore import RestoreOptions
from strongroom.image.vaultview import ImageVault
from strongroom.image.vmrestore import RestoreSummary
from strongroom.vault import RecoveryPoint

__all__ = ["LibvirtProvider"]


class LibvirtProvider:
    """VMs of one libvirt connection (``uri``: default ``LIBVIRT_DEFAULT_URI`` or
    ``qemu:///system``)."""

    def __init__(self, uri: str | None = None) -> None:
        self.conn = Connection(uri)
        self.uri = self.conn.uri

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LibvirtProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list(self, vault: ImageVault | None, names: list[str] | None = None) -> list[VMRow]:
        return list_vms(self.conn, vault, names)

    def describe(self, name: str) -> dict[str, Any]:
        return list_vms(self.conn, None, [name])[0].to_dict()

    def backup(
        self,
        vault: ImageVault,
        name: str,
        opts: BackupOptions,
        *,
        consistency: str = "auto",
        full: bool = False,
        progress: Progress | None = None,
    ) -> BackupSummary:
        lopts = LibvirtOptions(consistency, full)
        return backup_domain(vault, self.conn, name, opts, lopts, progress)

    def restore_in_place(
        self, vault: ImageVault, point: RecoveryPoint, opts: RestoreOptions, *, start: bool = False
    ) -> RestoreSummary:
        return restore_domain_in_place(vault, point, self.conn, opts, start=start)

    def define_as_new(
        self,
        vault: ImageVault,
        point: RecoveryPoint,
        name: str,
        opts: RestoreOptions,
        *,
        disk_dir: Path | None = None,
        fmt: str | None = None,
        start: bool = False,
    ) -> RestoreSummary:
        return restore_domain_as_new(
            vault, point, self.conn, name, opts, disk_dir=disk_dir, fmt=fmt, start=start
        )

    def attach(
        self,
        vault: ImageVault,
        point: RecoveryPoint,
        disk: str | None,
        domain: str,
        opts: RestoreOptions,
        *,
        to: Path | None = None,
        fmt: str | None = None,
    ) -> RestoreSummary:
        return attach_restored_disk(vault, point, disk, self.conn, domain, opts, to=to, fmt=fmt)

"""The VM provider interface: where image-level backups find VMs and restores put them.

Two providers exist: the offline one (domain XML files plus their images: functions in
:mod:`strongroom.image.backup` and :mod:`strongroom.image.vmrestore`) and libvirt
(:class:`strongroom.image.libvirt.LibvirtProvider`, a libvirtd connection URI; running or
shut-off domains).  This protocol is what a provider with a daemon offers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from strongroom.image.backup import BackupOptions, BackupSummary, Progress
from strongroom.image.restore import RestoreOptions
from strongroom.image.vaultview import ImageVault
from strongroom.image.vmrestore import RestoreSummary
from strongroom.vault import RecoveryPoint

__all__ = ["VMProvider"]


class VMProvider(Protocol):
    uri: str

    def list(self, vault: ImageVault | None, names: list[str] | None = None) -> list[Any]:
        """The VMs (each with ``to_dict()``), with their last point in ``vault``."""
        ...

    def describe(self, name: str) -> dict[str, Any]:
        """Name, UUID, state and disks of one VM."""
        ...

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
        """One backup session of one VM: a ``vm`` point."""
        ...

    def restore_in_place(
        self, vault: ImageVault, point: RecoveryPoint, opts: RestoreOptions, *, start: bool = False
    ) -> RestoreSummary: ...

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
        """Restore the point's VM as a new VM defined in the provider."""
        ...

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
        """Restore one disk of the point and attach it to ``domain``."""
        ...

    def close(self) -> None: ...

"""libvirt's pull-mode backup of a running domain, as strongroom drives it.

``start`` freezes the guest's filesystems when asked (QEMU guest agent, through libvirt),
calls ``backupBegin`` with a ``<domainbackup mode='pull'>`` (an NBD server on a unix socket
and a scratch file per disk, both in a private folder) and a ``<domaincheckpoint>`` created
in the same call, then thaws, always, also when the call failed.  Each disk is then read
from the NBD export named after its target.  ``end_job`` stops the job (``abortJob`` is how a
pull-mode backup ends); ``drop_checkpoint`` deletes the new checkpoint when the point could
not be saved, so the previous one stays the newest and its bitmap (libvirt merges the
dropped one into it) still covers every change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from strongroom.errors import ImageError
from strongroom.image.disks import ExportDisk
from strongroom.image.libvirt.checkpoints import delete_checkpoint
from strongroom.image.libvirt.conn import LibvirtError, libvirt_errors
from strongroom.image.libvirt.domxml import (
    BackupDisk,
    agent_state,
    backup_xml,
    checkpoint_xml,
    dac_owner,
)
from strongroom.records import dataclass

__all__ = ["CONSISTENCY_MODES", "Consistency", "PullBackup"]

CONSISTENCY_MODES: Final = ("auto", "app", "crash")
_THAW_TRIES: Final = 3


@dataclass
class Consistency:
    requested: str
    achieved: str
    frozen_filesystems: int | None = None
    detail: str = ""


def _thaw(dom: Any) -> str | None:
    """Thaw the guest's filesystems; the last error if every try failed."""
    error = None
    for attempt in range(_THAW_TRIES):
        try:
            with libvirt_errors("cannot thaw the guest's filesystems"):
                dom.fsThaw()
            return None
        except LibvirtError as exc:
            error = str(exc)
            time.sleep(0.2 * (attempt + 1))
    return error


class PullBackup:
    """One pull-mode backup job of a running domain; see the module docstring."""

    def __init__(self, dom: Any, live_xml: str, checkpoint: str | None) -> None:
        self.dom = dom
        self.name = str(dom.name())
        self.live_xml = live_xml
        self.checkpoint = checkpoint
        self.folder: Path | None = None
        self.job = False
        self.checkpoint_made = False

    @property
    def socket(self) -> Path:
        assert self.folder is not None
        return self.folder / "nbd.sock"

    def _make_folder(self) -> Path:
        """A fresh private folder the domain's qemu process can write (socket, scratch)."""
        folder = Path(tempfile.mkdtemp(prefix="strongroom-backup-"))
        owner = dac_owner(self.live_xml)
        if owner is not None and os.geteuid() == 0:
            os.chown(folder, *owner)  # qemu runs as this user; nobody else gets in (0700)
        return folder

    def _freeze(self, requested: str) -> Consistency:
        if requested == "crash":
            return Consistency(requested, "crash")
        state = agent_state(self.live_xml)
        problem = None
        if state != "connected":
            problem = "no guest agent channel" if state is None else f"guest agent is {state}"
        else:
            try:
                with libvirt_errors("the guest agent could not freeze the filesystems"):
                    frozen = int(self.dom.fsFreeze())
                return Consistency(requested, "app", frozen_filesystems=frozen)
            except LibvirtError as exc:
                problem = str(exc)
        if requested == "app":
            raise ImageError(f"{self.name}: cannot take an app-consistent backup: {problem}")
        return Consistency(requested, "crash", detail=problem)

    def start(self, disks: list[BackupDisk], skip: list[str], requested: str) -> Consistency:
        """Freeze (if asked), begin the job with its checkpoint, thaw; see the module doc."""
        if self.folder is None:
            self.folder = self._make_folder()
        backup = backup_xml(self.socket, self.folder, disks, skip)
        cp_xml = checkpoint_xml(self.checkpoint, disks, skip) if self.checkpoint else None
        consistency = self._freeze(requested)
        try:
            with libvirt_errors(f"cannot start the backup of {self.name}"):
                self.dom.backupBegin(backup, cp_xml, 0)
            self.job, self.checkpoint_made = True, cp_xml is not None
        finally:
            if consistency.achieved == "app":
                error = _thaw(self.dom)
                if error is not None:
                    raise ImageError(f"{self.name}: filesystems may still be frozen: {error}")
        return consistency

    def export(self, target: str, incremental: bool) -> ExportDisk:
        """The NBD export of one disk (with libvirt's ``backup-TARGET`` dirty bitmap)."""
        return ExportDisk(self.socket, target, bitmap=f"backup-{target}" if incremental else None)

    def end_job(self) -> None:
        """End the backup job (NBD server and scratch files go) and remove the folder."""
        if self.job:
            self.job = False
            with contextlib.suppress(LibvirtError), libvirt_errors("cannot end the backup job"):
                self.dom.abortJob()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def drop_checkpoint(self) -> str | None:
        """Delete the checkpoint this job made (after a failure); the error, if any."""
        if not self.checkpoint_made or self.checkpoint is None:
            return None
        self.checkpoint_made = False
        try:
            delete_checkpoint(self.dom, self.checkpoint)
        except LibvirtError as exc:
            return str(exc)
        return None

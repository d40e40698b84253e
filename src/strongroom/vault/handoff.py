"""Opening the same vault in a helper process without the passphrase.

A files backup may hand directories to worker processes (``files/procwork.py``); each needs
its own handle on the vault to deduplicate against the index and write packs.  The parent
passes a :class:`VaultHandoff` over a private pipe (never argv or the environment): the master
secret, the config it verified, and where the storage is.  Only storage that another process
on this machine can open by its path qualifies (``capabilities.local_root``); for the others
:meth:`Vault.handoff` returns ``None`` and the backup keeps to threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from strongroom.records import dataclass
from strongroom.storage.local import LocalBackend
from strongroom.vault.config import VaultConfig
from strongroom.vault.crypto import VaultKeys

if TYPE_CHECKING:
    from strongroom.vault.vault import Vault


@dataclass(frozen=True)
class VaultHandoff:
    root: str
    master: bytes
    slot_id: str
    config: VaultConfig


def open_handoff(handoff: VaultHandoff) -> Vault:
    """The vault ``handoff`` describes, its index loaded on first use; takes no lock (the
    parent holds the run's lock for the whole backup)."""
    from strongroom.vault.vault import Vault

    keys = VaultKeys.from_master(handoff.master)
    return Vault(LocalBackend(Path(handoff.root)), handoff.config, keys, handoff.slot_id)

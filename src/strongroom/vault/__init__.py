"""The vault: deduplicated, compressed, client-side encrypted storage of recovery points.

The public surface is :class:`Vault` and the types it hands out; the modules behind it are
private to this package.
"""

from strongroom.vault.check import CheckReport, Problem, check_vault
from strongroom.vault.config import VaultSettings
from strongroom.vault.forget import soft_delete, undelete
from strongroom.vault.keys import KDFParams, KeySlot
from strongroom.vault.points import PointManifest, RecoveryPoint
from strongroom.vault.prune import PruneOptions, PruneReport, prune
from strongroom.vault.repair import RepairReport, repair
from strongroom.vault.retention import KeepPolicy
from strongroom.vault.settings import change_settings
from strongroom.vault.stats import VaultStats, vault_stats
from strongroom.vault.tombstones import Tombstone
from strongroom.vault.trees import decode_tree, encode_tree
from strongroom.vault.vault import Vault
from strongroom.vault.writer import CHUNK_DATA, CHUNK_TREE, ChunkWriter, PutResult, WriterStats

__all__ = [
    "CHUNK_DATA",
    "CHUNK_TREE",
    "CheckReport",
    "ChunkWriter",
    "KDFParams",
    "KeepPolicy",
    "KeySlot",
    "PointManifest",
    "Problem",
    "PruneOptions",
    "PruneReport",
    "PutResult",
    "RecoveryPoint",
    "RepairReport",
    "Tombstone",
    "Vault",
    "VaultSettings",
    "VaultStats",
    "WriterStats",
    "change_settings",
    "check_vault",
    "decode_tree",
    "encode_tree",
    "prune",
    "repair",
    "soft_delete",
    "undelete",
    "vault_stats",
]

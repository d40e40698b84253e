"""Changing a vault's settings: soft-delete window, immutability period, compression level.

``config`` and its copy are rewritten with a new MAC (only key holders can change settings).  Rules:

- ``immutable_days`` can be raised but never lowered, like a locked immutable vault; in a
  vault served by ``strongroom server`` the server decides instead (an admin may lower it,
  with a second admin's approval when one exists: ``docs/server.md``).
- ``compression_level`` (zstd 1-19) may change either way: it applies to what is written from
  then on; stored blobs keep the level they were written with (reading does not need it).
- ``soft_delete_days`` may change either way (0 turns soft delete off); a point already
  forgotten keeps the purge date its tombstone records, so lowering it never shortens the
  window of a soft-deleted point.

These rules bind strongroom clients; against a hostile client with the key (or an attacker who
replays an old ``config``), the storage's own retention lock is what protects the data.
"""

from __future__ import annotations

from dataclasses import replace

from strongroom.errors import SettingsError
from strongroom.storage.served import server_decides_settings
from strongroom.vault.config import VaultSettings, check_compression_level, write_config
from strongroom.vault.vault import Vault

MAX_DAYS = 36_500


def _check_days(name: str, value: int) -> None:
    if not 0 <= value <= MAX_DAYS:
        raise SettingsError(f"{name} must be between 0 and {MAX_DAYS} days, not {value}")


def change_settings(
    vault: Vault,
    *,
    soft_delete_days: int | None = None,
    immutable_days: int | None = None,
    compression_level: int | None = None,
) -> VaultSettings:
    """Apply the changes to the current ``config`` (read again first) and write it."""
    current = vault.refresh_config().settings
    new = current
    if compression_level is not None:
        check_compression_level(compression_level)
        new = replace(new, compression_level=compression_level)
    if soft_delete_days is not None:
        _check_days("soft-delete-days", soft_delete_days)
        new = replace(new, soft_delete_days=soft_delete_days)
    if immutable_days is not None:
        _check_days("immutable-days", immutable_days)
        if immutable_days < current.immutable_days and not server_decides_settings(vault.backend):
            raise SettingsError(
                f"immutable-days can be raised but never lowered: it is "
                f"{current.immutable_days} days, so {immutable_days} is refused"
            )
        new = replace(new, immutable_days=immutable_days)
    if new == current:
        return current
    config = vault.config.with_settings(new)
    write_config(vault.backend, config.serialize(vault.keys))
    vault.config = config
    return new

"""The one exception tree of strongroom.

Every error the library raises on purpose derives from :class:`StrongroomError`, with one
subclass per layer.  The CLI maps these to one-line messages and exit codes; the library never
exits the process.
"""

from __future__ import annotations


class StrongroomError(Exception):
    """Base of every error strongroom raises on purpose."""


# --- storage layer -------------------------------------------------------------------------


class StorageError(StrongroomError):
    """A backend operation failed."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class ObjectNotFound(StorageError):
    """The named object does not exist."""


class PermanentStorageError(StorageError):
    """Retrying will not help: permission denied, bad configuration, disk full, invalid name."""


class ReadOnlyStorage(PermanentStorageError):
    """The storage refuses writes: a read-only mount or share, missing write permission, a
    write-once (WORM) bucket.  Reading still works, so commands that only read go on without
    a lock."""


class StorageFull(PermanentStorageError):
    """No space left (disk full, quota exceeded).  Reading still works; prune can free space
    (see ``docs/architecture.md``, "Read-only and full vaults")."""


class ObjectLocked(PermanentStorageError):
    """The storage refuses to delete an object it holds under retention (S3 Object Lock, a
    vault server passing that refusal on as HTTP 423): prune skips it and says so."""


class TransientStorageError(StorageError):
    """A passing fault (timeout, connection reset, throttling): the operation may be retried."""


class BackendConfigError(StorageError):
    """The vault location cannot be turned into a backend (bad URL, missing credentials)."""


class AccessDenied(PermanentStorageError):
    """A vault server refused the request: no, a bad, expired or revoked token, or a role
    that may not do this (HTTP 401/403)."""


class ObjectConflict(PermanentStorageError):
    """A vault server refused to replace an object that already exists (HTTP 409)."""


class RequestRefused(PermanentStorageError):
    """A vault server refused the request as invalid: a bad name, bytes that do not match
    their name, an upload too large or too slow, an unknown vault (HTTP 400/404/408/413)."""


class ApprovalPending(PermanentStorageError):
    """A vault server keeps a settings change that lowers a protection until a second admin
    approves it (HTTP 202): nothing changed yet."""


# --- chunking layer ------------------------------------------------------------------------


class ChunkingError(StrongroomError):
    """Invalid chunker parameters or input."""


# --- vault layer ---------------------------------------------------------------------------


class VaultError(StrongroomError):
    """A vault-level failure."""


class NotAVault(VaultError):
    """The location holds no strongroom vault."""


class VaultExists(VaultError):
    """`init` on a location that already holds a vault."""


class UnsupportedVersion(VaultError):
    """The vault was written by a format version this strongroom cannot read."""


class WrongPassphrase(VaultError):
    """No key slot opens with the given passphrase."""


class KeySlotError(VaultError):
    """A key slot operation is not possible (last slot, unknown slot)."""


class IntegrityError(VaultError):
    """A stored object is corrupted, truncated, tampered with or missing; names the object."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class MisnamedObject(IntegrityError):
    """A genuine object of this vault (it authenticates) under a name its content does not
    hash to: renamed or copied by hand.  ``check --repair`` stores it under its right name."""


class PointNotFound(VaultError):
    """No recovery point matches the given id, prefix or selector."""


class AmbiguousPoint(VaultError):
    """A prefix matches more than one recovery point."""


class LockConflict(VaultError):
    """Another process holds a conflicting lock on the vault."""


class ImmutablePoint(VaultError):
    """The recovery point is younger than the vault's immutability period: it cannot go."""


class SettingsError(VaultError):
    """A vault setting cannot be changed that way (lowering immutable-days, a bad value)."""


class PrunedDuringBackup(VaultError):
    """A prune removed data this backup relies on while it ran: the point was not committed."""


class RepairNeeded(VaultError):
    """The vault is damaged in a way prune must not build on: run ``check --repair`` first."""


# --- vault server --------------------------------------------------------------------------


class ServerError(StrongroomError):
    """The vault server cannot start or its catalog cannot be used (bad address, no catalog)."""


# --- engines -------------------------------------------------------------------------------


class FilesError(StrongroomError):
    """File-level backup or restore failed."""


class ImageError(StrongroomError):
    """Image-level backup or restore failed."""


class GuestFilesError(StrongroomError):
    """Files inside an image point cannot be read: an unknown or damaged filesystem, a
    locked volume, a path that is not there."""


class NBDError(ImageError):
    """An NBD protocol or transport error."""

"""The vault's ``config`` object: format version, vault id and settings.

It is plain JSON so that any strongroom can tell a vault and its version before it has a key;
its settings carry a MAC under a key derived from the master secret, so nobody without the key
can change them (checked right after a key slot opens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, field, replace
from datetime import UTC, datetime
from typing import Any

from strongroom import timingsafe
from strongroom.errors import (
    IntegrityError,
    NotAVault,
    ObjectNotFound,
    SettingsError,
    UnsupportedVersion,
)
from strongroom.records import dataclass
from strongroom.storage.backend import Backend
from strongroom.vault.crypto import VaultKeys

CONFIG_NAME = "config"
CONFIG_COPY_NAME = "config-copy"
"""``config`` is written twice: ``config`` then ``config-copy`` (docs/format.md §3)."""
FORMAT_NAME = "strongroom-vault"
# 2: objects named by BLAKE3 (1, never released, named them by SHA-256)
FORMAT_VERSION = 2

MiB = 1024 * 1024
# zstd's levels without its "ultra" ones (20-22 need up to 128 MiB windows to read back)
COMPRESSION_LEVELS = range(1, 20)


@dataclass(frozen=True)
class VaultSettings:
    """Tunables recorded in the vault so every client writes alike."""

    pack_size: int = 16 * MiB
    # zstd level 2 stores text and /usr in about 96 % of level 1's bytes, at 75-90 % of its
    # speed (docs/architecture.md "Compression level"); older vaults keep the 1 they record.
    compression_level: int = 2
    soft_delete_days: int = 14
    immutable_days: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_compression_level(level: int) -> None:
    if level not in COMPRESSION_LEVELS:
        first, last = COMPRESSION_LEVELS[0], COMPRESSION_LEVELS[-1]
        raise SettingsError(f"compression-level must be between {first} and {last}, not {level}")


@dataclass(frozen=True)
class VaultConfig:
    vault_id: bytes
    created: str
    settings: VaultSettings

    @classmethod
    def new(cls, vault_id: bytes, settings: VaultSettings) -> VaultConfig:
        return cls(vault_id, datetime.now(UTC).isoformat(timespec="seconds"), settings)

    def with_settings(self, settings: VaultSettings) -> VaultConfig:
        return replace(self, settings=settings)

    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "id": self.vault_id.hex(),
            "created": self.created,
            "settings": asdict(self.settings),
        }

    def serialize(self, keys: VaultKeys) -> bytes:
        body = self._body()
        body["mac"] = keys.mac(_canonical(body)).hex()
        return _stored_form(body)


def _stored_form(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse_config(stored: bytes, where: str) -> tuple[VaultConfig, dict[str, Any]]:
    """Parse without a key; raises NotAVault / UnsupportedVersion before anything else."""
    try:
        doc = json.loads(stored)
    except (ValueError, RecursionError):
        raise NotAVault(f"{where} is not a strongroom vault (config is not JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise NotAVault(f"{where} is not a strongroom vault")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "upgrade strongroom" if newer else "it was written by an older strongroom"
        raise UnsupportedVersion(
            f"{where} uses vault format version {version}; this strongroom reads version "
            f"{FORMAT_VERSION} ({hint})"
        )
    try:
        known = {
            k: v for k, v in doc["settings"].items() if k in VaultSettings.__dataclass_fields__
        }
        config = VaultConfig(bytes.fromhex(doc["id"]), doc["created"], VaultSettings(**known))
        _check_types(config)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"config: malformed ({exc})", name=CONFIG_NAME) from None
    return config, doc


def _check_types(config: VaultConfig) -> None:
    s = config.settings
    numbers = (s.pack_size, s.compression_level, s.soft_delete_days, s.immutable_days)
    if not all(type(n) is int for n in numbers) or not isinstance(s.extra, dict):
        raise ValueError("a setting has the wrong type")
    if s.compression_level not in COMPRESSION_LEVELS:
        raise ValueError(f"compression level {s.compression_level} is out of range")
    if len(config.vault_id) != 16 or not isinstance(config.created, str):
        raise ValueError("id or created has the wrong form")


def verify_config_mac(doc: dict[str, Any], stored: bytes, keys: VaultKeys) -> None:
    """The MAC covers the settings; the stored form must be exactly what strongroom writes."""
    body = {k: v for k, v in doc.items() if k != "mac"}
    want = keys.mac(_canonical(body)).hex().encode()
    got = str(doc.get("mac", "")).encode("utf-8", "replace")
    if not timingsafe.equal(want, got) or _stored_form(doc) != stored:
        raise IntegrityError("config: MAC mismatch (changed without the key)", name=CONFIG_NAME)


@dataclass(frozen=True)
class StoredConfig:
    """One stored copy of the config that parses (its MAC is checked once a key opens)."""

    name: str
    stored: bytes
    config: VaultConfig
    doc: dict[str, Any]


def write_config(backend: Backend, stored: bytes) -> None:
    """``config``, then ``config-copy``: the change takes effect with the primary, as it
    always did; a crash between leaves a stale copy that ``check`` reports."""
    backend.put(CONFIG_NAME, stored)
    backend.put(CONFIG_COPY_NAME, stored)


def read_configs(backend: Backend) -> tuple[list[StoredConfig], list[str]]:
    """The copies that parse, primary first, and what was wrong with the others.

    No copy at all is "not a strongroom vault"; an unsupported version in the primary is
    raised at once (a newer vault must not be read through an older copy).  Without any
    copy that parses, the primary's (else the copy's) error is raised."""
    found: list[StoredConfig] = []
    notes: list[str] = []
    errors: list[Exception] = []
    where = backend.describe()
    for name in (CONFIG_NAME, CONFIG_COPY_NAME):
        try:
            stored = backend.get(name)
        except ObjectNotFound:
            notes.append(f"{name} is missing")
            continue
        try:
            config, doc = parse_config(stored, where)
        except UnsupportedVersion:
            if name == CONFIG_NAME:
                raise
            notes.append(f"{name}: unsupported version")
            continue
        except (NotAVault, IntegrityError) as exc:
            notes.append(f"{name}: {_without_place(str(exc), where)}")
            errors.append(exc)
            continue
        found.append(StoredConfig(name, stored, config, doc))
    if not found:
        if errors:
            raise errors[0]
        raise NotAVault(f"{where} is not a strongroom vault (no config)")
    return found, notes


def _without_place(message: str, where: str) -> str:
    return message.replace(f"{where} is ", "it is ", 1)


def choose_config(
    found: list[StoredConfig], vault_id: bytes, keys: VaultKeys, warn: Callable[[str], None]
) -> StoredConfig:
    """The first copy of ``vault_id`` whose MAC verifies; ``warn`` when it is not the
    primary.  Raises the primary's MAC error when none verifies."""
    first_error: IntegrityError | None = None
    for candidate in found:
        if candidate.config.vault_id != vault_id:
            continue
        try:
            verify_config_mac(candidate.doc, candidate.stored, keys)
        except IntegrityError as exc:
            first_error = first_error or exc
            continue
        if candidate.name != CONFIG_NAME:
            warn(
                f"{CONFIG_NAME} is missing or damaged: using {candidate.name} "
                "(`strongroom check --repair` restores it)"
            )
        return candidate
    assert first_error is not None
    raise first_error

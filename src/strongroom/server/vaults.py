"""The vaults a server serves: names in the catalog, each opened once with ``open_backend``."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from strongroom.errors import StorageError
from strongroom.server.auth import DATA_ROLES, ApiError
from strongroom.server.catalog import Catalog, TokenRow
from strongroom.server.gateway import VaultGateway
from strongroom.storage.url import open_backend

_log = logging.getLogger("strongroom.server")
TEMP_MAX_AGE_S = 3600.0
VAULT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_vault_name(name: str) -> str:
    if not VAULT_NAME.fullmatch(name):
        raise ApiError(400, f"invalid vault name {name!r}: letters, digits, '.', '_', '-'")
    return name


def _clean_temp(name: str, backend: object) -> None:
    """Drop temporary files of uploads a killed server left (packs stream into them) once,
    when the process first opens the vault: only those older than an hour, far longer than
    an upload may take (``Limits.body_timeout``)."""
    cleanup = getattr(backend, "cleanup_temp", None)
    if cleanup is None:
        return
    try:
        removed = cleanup(TEMP_MAX_AGE_S)
    except StorageError as exc:  # serving matters more than tidying up
        _log.warning("vault %s: cannot remove old temporary files: %s", name, exc)
        return
    if removed:
        _log.info("vault %s: removed %d temporary file(s) of interrupted uploads", name, removed)


class VaultRegistry:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._open: dict[str, VaultGateway] = {}
        self._lock = threading.Lock()

    def storage_root(self) -> Path | None:
        root = self.catalog.meta("storage_root")
        return Path(root) if root else None

    def gateway(self, name: str, token: TokenRow, create: bool = False) -> VaultGateway | None:
        """The vault's gateway.  For an admin, a name the catalog does not know yet is an
        empty vault (None) that ``create`` makes under the storage root: so ``strongroom
        init --vault https://SERVER/NAME`` with an admin token creates a vault."""
        check_vault_name(name)
        if token.role not in DATA_ROLES:
            raise ApiError(403, f"a {token.role} token cannot use vaults", "forbidden")
        with self._lock:
            found = self._open.get(name)
        if found is not None:
            return found
        location = self.catalog.vault_location(name)
        if location is None:
            if token.role != "admin" or self.storage_root() is None:
                raise ApiError(404, f"no vault {name!r} on this server", "no-vault")
            if not create:
                return None
            location = self.create(name)
        return self._opened(name, location)

    def create(self, name: str) -> str:
        """Register ``name`` at ``<storage root>/<name>`` (its location)."""
        check_vault_name(name)
        root = self.storage_root()
        if root is None:
            raise ApiError(400, "this server has no storage root for new vaults")
        location = str(root / name)
        if not self.catalog.add_vault(name, location):
            raise ApiError(409, f"vault {name!r} exists already", "exists")
        return location

    def _opened(self, name: str, location: str) -> VaultGateway:
        with self._lock:
            found = self._open.get(name)
            if found is None:
                try:
                    backend = open_backend(location)
                except StorageError as exc:
                    why = f"vault {name!r} cannot be opened: {exc}"
                    raise ApiError(500, why, "permanent") from None
                _clean_temp(name, backend)
                found = self._open[name] = VaultGateway(name, backend, self.catalog)
            return found

    def close(self) -> None:
        with self._lock:
            for gw in self._open.values():
                gw.backend.close()
            self._open.clear()

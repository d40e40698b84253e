"""The admin side of the API for the CLI: tokens, approvals and the audit log (standard
library only)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from strongroom.errors import BackendConfigError, TransientStorageError
from strongroom.storage.http import HttpClient, ServerAddress, raise_for, token_from_env

SERVER_ENV = "STRONGROOM_SERVER"


class AdminClient:
    def __init__(self, server: str | None, token_file: Path | None = None) -> None:
        url = server or os.environ.get(SERVER_ENV)
        if not url:
            raise BackendConfigError(f"no server given: use --server URL or set {SERVER_ENV}")
        self._http = HttpClient(ServerAddress.parse(url), token_from_env(token_file))

    def _call(self, method: str, path: str, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        reply = self._http.request(method, path, data)
        raise_for(reply, f"{self._http.address.url()}: {what}")
        if not reply.body:
            return None
        doc = reply.json()
        if not isinstance(doc, dict):
            raise TransientStorageError(f"{what}: unexpected reply from the server")
        return doc

    def create_token(
        self, role: str, sources: list[str], expires_days: float | None, label: str
    ) -> dict[str, Any]:
        body = {"role": role, "sources": sources, "expires_days": expires_days, "label": label}
        result: dict[str, Any] = self._call("POST", "/v1/tokens", "create token", body)
        return result

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/tokens", "list tokens")["tokens"])

    def revoke(self, token_id: str) -> None:
        self._call("DELETE", f"/v1/tokens/{quote(token_id, safe='')}", f"revoke {token_id}")

    def add_user(self, name: str, role: str, password: str) -> dict[str, Any]:
        body = {"name": name, "role": role, "password": password}
        result: dict[str, Any] = self._call("POST", "/v1/users", f"add user {name}", body)
        return result

    def approvals(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/approvals", "list approval requests")["approvals"])

    def approve(self, approval_id: str) -> dict[str, Any]:
        path = f"/v1/approvals/{quote(approval_id, safe='')}"
        result: dict[str, Any] = self._call("POST", path, f"approve {approval_id}")
        return result

    def reject(self, approval_id: str) -> None:
        path = f"/v1/approvals/{quote(approval_id, safe='')}"
        self._call("DELETE", path, f"reject {approval_id}")

    def audit(self, limit: int) -> list[dict[str, Any]]:
        path = f"/v1/audit?{urlencode({'limit': limit})}"
        return list(self._call("GET", path, "read the audit log")["entries"])

    def close(self) -> None:
        self._http.close()

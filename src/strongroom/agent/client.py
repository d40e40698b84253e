"""The agent's side of the control plane's API (standard library HTTP, as the vault client)."""

from __future__ import annotations

import json
from typing import Any

from strongroom.errors import TransientStorageError
from strongroom.storage.http import HttpClient, ServerAddress, raise_for

POLL_TIMEOUT_MARGIN_S = 30.0


class AgentClient:
    def __init__(self, server: str, token: str, *, wait: float = 30.0) -> None:
        self.wait = wait
        self._http = HttpClient(
            ServerAddress.parse(server), token, timeout=wait + POLL_TIMEOUT_MARGIN_S
        )

    def _call(self, method: str, path: str, what: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        reply = self._http.request(method, path, data)
        raise_for(reply, f"{self._http.address.url()}: {what}")
        if reply.status == 204 or not reply.body:
            return None
        doc = reply.json()
        if not isinstance(doc, dict):
            raise TransientStorageError(f"{what}: unexpected reply from the server")
        return doc

    def register(self, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("POST", "/v1/agent/register", "register", {"name": name})
        return doc

    def next_job(self) -> dict[str, Any] | None:
        """A job to run, waiting up to ``wait`` seconds for one (None: nothing for now)."""
        found: dict[str, Any] | None = self._call(
            "GET", f"/v1/agent/jobs?wait={self.wait:g}", "ask for work"
        )
        return found

    def progress(self, job: int, doc: dict[str, Any]) -> bool:
        """Report progress; True if the server wants the job stopped."""
        reply = self._call("POST", f"/v1/agent/jobs/{job}/progress", f"job {job} progress", doc)
        return bool(reply and reply.get("cancel"))

    def result(self, job: int, doc: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST", f"/v1/agent/jobs/{job}/result", f"job {job} result", doc
        )
        return found

    def close(self) -> None:
        self._http.close()

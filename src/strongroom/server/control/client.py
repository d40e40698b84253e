"""The control plane's admin API for the CLI (standard library only, like the token client)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from strongroom.server.client import AdminClient


class ControlClient(AdminClient):
    def create_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", "/v1/policies", "create policy", body)
        return found

    def policies(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/policies", "list policies")["policies"])

    def protect(self, body: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", "/v1/items", f"protect {body['name']}", body)
        return found

    def items(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/items", "list items")["items"])

    def machines(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/machines", "list machines")["machines"])

    def jobs(self, item: str | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"limit": limit}
        if item:
            query["item"] = item
        return list(self._call("GET", f"/v1/jobs?{urlencode(query)}", "list jobs")["jobs"])

    def job(self, job_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}", f"show job {job_id}")
        return found

    def cancel(self, job_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST", f"/v1/jobs/{job_id}/cancel", f"cancel job {job_id}"
        )
        return found

    def backup_now(self, item: str) -> dict[str, Any]:
        path = f"/v1/items/{quote(item, safe='')}/backup-now"
        found: dict[str, Any] = self._call("POST", path, f"back up {item} now")
        return found

    def add_alert(self, kind: str, address: str, smtp: str | None) -> dict[str, Any]:
        body = {"kind": kind, "address": address, "smtp": smtp}
        found: dict[str, Any] = self._call("POST", "/v1/alerts", f"add {kind} alert", body)
        return found

    def alerts(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", "/v1/alerts", "list alerts")
        return found

    def set_vault_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        what = f"set the schedule of {body['vault']}"
        found: dict[str, Any] = self._call("POST", "/v1/vault-schedules", what, body)
        return found

    def vault_schedules(self) -> list[dict[str, Any]]:
        """Each vault's schedules: verify fields and prune fields merged per vault."""
        doc = self._call("GET", "/v1/vault-schedules", "list schedules")
        merged: dict[str, dict[str, Any]] = {}
        for row in [*doc["schedules"], *doc.get("prune_schedules", [])]:
            merged.setdefault(str(row["vault"]), {}).update(row)
        return [merged[v] for v in sorted(merged)]

"""The vault settings form: an admin changes soft delete or immutability from the dashboard.

A vault's ``config`` carries a MAC under its key, which the server never holds, so the server
asks an online agent holding the passphrase (one with an item in that vault) to sign the new
settings through the relay (``kind = 'settings'``), checks that the signed config changes
exactly what was asked (``approvals.check_signed``), and then treats it as an admin's put of
``config``: raising is stored at once; lowering takes the same second-admin path as
``strongroom settings`` (``server/approvals.py``), the requester being ``user:NAME``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from strongroom.server import approvals
from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.relay import Relay
from strongroom.server.web import admin_routes, frame
from strongroom.server.web.frame import Form
from strongroom.server.web.users import Session

MAX_DAYS = 36_500
"""As ``strongroom settings`` (``vault/settings.py``)."""


def install(app: FastAPI, server: Server, plane: ControlPlane, relay: Relay) -> None:
    @app.post("/ui/vaults/{name}/settings", include_in_schema=False)
    async def change(request: Request, name: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            if await run_in_threadpool(server.catalog.vault_location, name) is None:
                raise ApiError(404, f"no vault {name!r} on this server", "no-vault")
            wanted = wanted_days(form)
            machine = signer(plane, relay, name)
            t = await relay.open(machine, {"kind": "settings", "vault": name, **wanted})
            signed = await relay.read_all(t)
            asker = approvals.user_actor(who.user)
            try:
                await run_in_threadpool(_store, server, name, asker, signed, wanted)
            except approvals.PendingApproval as waiting:
                row = waiting.approval
                request.state.audit = f"{name}: {row.summary}: approval {row.id} pending"
                notice = (
                    f"{name}: {row.summary} is waiting for another admin's approval "
                    f"(request {row.id})."
                )
                return await admin_routes.vaults_response(server, who, notice, 202)
            changed = ", ".join(f"{k} {v}" for k, v in wanted.items())
            request.state.audit = f"{name}: {changed}"
            return await admin_routes.vaults_response(server, who, f"{name}: {changed}.")

        return await frame.write(server, request, "vault-settings", admin_routes.ADMIN, work)


def wanted_days(form: Form) -> dict[str, int]:
    """The protections the form sets (a blank field keeps its value)."""
    wanted: dict[str, int] = {}
    for key in approvals.PROTECTIONS:
        text = form.get(key, "").strip()
        if not text:
            continue
        if not text.isdigit() or int(text) > MAX_DAYS:
            raise ApiError(400, f"{key}: a whole number of days from 0 to {MAX_DAYS}")
        wanted[key] = int(text)
    if not wanted:
        raise ApiError(400, "give soft_delete_days or immutable_days")
    return wanted


def signer(plane: ControlPlane, relay: Relay, vault: str) -> str:
    """An online agent that holds ``vault``'s passphrase (it backs up an item into it)."""
    machines = []
    for item in plane.defs.items():
        policy = plane.defs.policy(item.policy)
        if policy is not None and policy.vault == vault and item.machine not in machines:
            machines.append(item.machine)
    for machine in machines:
        if relay.online(machine):
            return machine
    raise ApiError(
        409,
        f"no online agent backs up into {vault!r} (the settings are signed with the vault's "
        "key, which only agents hold): run `strongroom agent run`, or use `strongroom settings`",
        "offline",
    )


def _store(
    server: Server, vault: str, asker: approvals.Actor, signed: bytes, wanted: dict[str, int]
) -> None:
    gateway = server.vaults.gateway(vault, admin_routes.READER)
    if gateway is None:
        raise ApiError(404, f"no vault {vault!r} on this server", "no-vault")
    gateway.change_config(asker, signed, wanted)

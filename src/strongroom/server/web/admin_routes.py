"""Routes of the agents page, the vault settings page (quotas, approving or rejecting a
settings change another admin asked for) and the usage sampler's thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from strongroom.errors import StorageError
from strongroom.server import approvals
from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Approval, TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.web import admin_pages, frame, usage
from strongroom.server.web.frame import Form, html
from strongroom.server.web.users import Session

ADMIN = ("admin",)


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    _sampler(app, server)
    _agent_route(app, server, plane)
    _vault_routes(app, server)


def _sampler(app: FastAPI, server: Server) -> None:
    sampler = usage.Sampler(server.catalog, server.vaults)
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with previous(a) as state:
            sampler.start()
            try:
                yield state
            finally:
                await run_in_threadpool(sampler.stop)

    app.router.lifespan_context = lifespan


def _agent_route(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    def listing() -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
        items: dict[str, list[str]] = {}
        for item in plane.defs.items():
            items.setdefault(item.machine, []).append(item.name)
        return plane.defs.machines(), items

    @app.get("/ui/agents", include_in_schema=False)
    async def agents(request: Request) -> Response:
        async def build(who: Session) -> Response:
            machines, items = await run_in_threadpool(listing)
            return html(admin_pages.agents_page(who, machines, items, plane.clock.now()))

        return await frame.page(server, request, build)


READER = TokenRow("dashboard", "admin", b"", [], "the dashboard", 0.0, None, None, None)
"""The dashboard reaching a vault's gateway as the server itself (reading its plain settings;
approvals and settings requests name their user as an :class:`approvals.Actor`)."""


def _settings(server: Server) -> list[dict[str, Any]]:
    rows = []
    for name, _ in server.catalog.vaults():
        found: dict[str, Any] = {"name": name, "quota": usage.quota(server.catalog, name)}
        try:
            gateway = server.vaults.gateway(name, READER)
            raw = gateway.backend.get("config") if gateway is not None else None
            settings = approvals.settings_of(raw, "config") if raw else None
        except (StorageError, ApiError):
            settings = None
        for key in approvals.PROTECTIONS:
            found[key] = "-" if settings is None else f"{approvals.days(settings, key):g}"
        rows.append(found)
    return rows


async def vaults_response(
    server: Server, who: Session, notice: str = "", status: int = 200
) -> Response:
    """The vault settings page, with what was just done."""
    vaults = await run_in_threadpool(_settings, server)
    found = await run_in_threadpool(server.catalog.approvals)
    return html(admin_pages.vaults_page(who, vaults, found, notice), status)


def _vault_routes(app: FastAPI, server: Server) -> None:
    async def page(who: Session, notice: str = "", status: int = 200) -> Response:
        return await vaults_response(server, who, notice, status)

    @app.get("/ui/vaults", include_in_schema=False)
    async def vaults(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return await page(who)

        return await frame.page(server, request, build)

    @app.post("/ui/vaults/{name}/quota", include_in_schema=False)
    async def set_quota(request: Request, name: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            if await run_in_threadpool(server.catalog.vault_location, name) is None:
                raise ApiError(404, f"no vault {name!r} on this server", "no-vault")
            text = form.get("quota", "").strip()
            size = usage.parse_size(text) if text else None
            await run_in_threadpool(usage.set_quota, server.catalog, name, size)
            return await page(who, f"Quota of {name}: {text or 'none'}.")

        return await frame.write(server, request, "set-quota", ADMIN, work)

    @app.post("/ui/approvals/{approval_id}/approve", include_in_schema=False)
    async def approve(request: Request, approval_id: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            row = await run_in_threadpool(_approve, server, who, approval_id)
            request.state.audit = (
                f"approval {row.id}: {row.vault}: {row.summary}, asked by {row.requested_by}, "
                f"approved by user:{who.user}"
            )
            return await page(who, f"Approved: {row.vault}: {row.summary}.")

        return await frame.write(server, request, "approve", ADMIN, work)

    @app.post("/ui/approvals/{approval_id}/reject", include_in_schema=False)
    async def reject(request: Request, approval_id: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            by = approvals.user_actor(who.user).id
            if not await run_in_threadpool(server.catalog.decide, approval_id, by, "rejected"):
                raise ApiError(404, f"no pending approval request {approval_id}", "no-approval")
            request.state.audit = f"approval {approval_id} rejected by {by}"
            return await page(who, f"Rejected request {approval_id}.")

        return await frame.write(server, request, "reject", ADMIN, work)


def _approve(server: Server, who: Session, approval_id: str) -> Approval:
    row = server.catalog.approval(approval_id)
    if row is None:
        raise ApiError(404, f"no approval request {approval_id}", "no-approval")
    gateway = server.vaults.gateway(row.vault, READER)
    if gateway is None:
        raise ApiError(404, f"no vault {row.vault!r} on this server", "no-vault")
    return gateway.approve(approvals.user_actor(who.user), approval_id)

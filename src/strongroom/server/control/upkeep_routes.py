"""Routes of the vaults' upkeep schedules: ``/v1/vault-schedules`` (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.routes import json_body_spec, parse_json, runner


class ScheduleBody(BaseModel):
    vault: str
    verify: str | None = None
    verify_days: float = Field(30.0, gt=0, le=3650)
    prune: str | None = None
    prune_machine: str | None = None
    prune_grace_hours: float = Field(1.0, ge=0, le=24 * 365)


def _set(plane: ControlPlane, b: ScheduleBody) -> dict[str, Any]:
    """Set the verify and/or the prune schedule of a vault; both as they now are."""
    if b.verify is None and b.prune is None:
        raise ApiError(400, "give --verify EXPR, --prune EXPR or both")
    if (b.prune is None) != (b.prune_machine is None):
        raise ApiError(400, "--prune and --prune-machine go together")
    doc: dict[str, Any] = {"vault": b.vault}
    if b.prune is not None and b.prune_machine is not None:  # checked before verify is set
        plane.pruner.check(b.vault, b.prune, b.prune_machine, b.prune_grace_hours)
    if b.verify is not None:
        doc.update(plane.verifier.set_schedule(b.vault, b.verify, b.verify_days).public())
    if b.prune is not None and b.prune_machine is not None:
        now = plane.clock.now()
        found = plane.pruner.set_schedule(
            b.vault, b.prune, b.prune_machine, b.prune_grace_hours, now
        )
        doc.update(found.public())
    return doc


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    @app.post(
        "/v1/vault-schedules",
        openapi_extra=json_body_spec(ScheduleBody),
        responses=oa.responses(404, s201=oa.json_body("the vault's schedule")),
    )
    async def set_schedule(request: Request) -> Response:
        call = Call(request, "vault-schedule-set")

        async def work(token: TokenRow) -> Response:
            b = await parse_json(server, request, ScheduleBody)
            call.obj = b.vault
            return JSONResponse(await run_in_threadpool(_set, plane, b), 201)

        return await run(call, work, ("admin",))

    @app.get("/v1/vault-schedules", responses=oa.responses(s200=oa.json_body("every schedule")))
    async def list_schedules(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            rows = await run_in_threadpool(plane.verifier.schedules)
            prunes = await run_in_threadpool(plane.pruner.schedules)
            return JSONResponse(
                {
                    "schedules": [s.public() for s in rows],
                    "prune_schedules": [s.public() for s in prunes],
                }
            )

        return await run(Call(request, "vault-schedule-list"), work, ("admin",))

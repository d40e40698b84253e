"""Routes of the vaults' upkeep schedules: ``/v1/vault-schedules`` (admin)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.catalog import TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.routes import _body, _parse, _runner


class ScheduleBody(BaseModel):
    vault: str
    verify: str
    verify_days: float = Field(30.0, gt=0, le=3650)


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = _runner(server)

    @app.post(
        "/v1/vault-schedules",
        openapi_extra=_body(ScheduleBody),
        responses=oa.responses(404, s201=oa.json_body("the vault's schedule")),
    )
    async def set_schedule(request: Request) -> Response:
        call = Call(request, "vault-schedule-set")

        async def work(token: TokenRow) -> Response:
            b = await _parse(server, request, ScheduleBody)
            call.obj = b.vault
            found = await run_in_threadpool(
                plane.verifier.set_schedule, b.vault, b.verify, b.verify_days
            )
            return JSONResponse(found.public(), 201)

        return await run(call, work, ("admin",))

    @app.get("/v1/vault-schedules", responses=oa.responses(s200=oa.json_body("every schedule")))
    async def list_schedules(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            rows = await run_in_threadpool(plane.verifier.schedules)
            return JSONResponse({"schedules": [s.public() for s in rows]})

        return await run(Call(request, "vault-schedule-list"), work, ("admin",))

"""The dashboard's numbers as JSON for admin tokens: an item's recovery points with their
verify state (``GET /v1/items/NAME/points``) and each vault's dedup and compression factors
and verify state (``GET /v1/vault-overview``), the same functions the pages use."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.catalog import TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.routes import runner
from strongroom.server.web import overview, points_pages
from strongroom.server.web.verifystate import PointVerify


def _verify(v: PointVerify) -> dict[str, Any]:
    return {"state": v.state, "checked": v.checked, "job": v.job, "why": v.why or None}


def points_doc(plane: ControlPlane, item: str) -> dict[str, Any]:
    vault, live, gone = points_pages.listing(plane, item)

    def doc(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "verify": _verify(r["verify"])}

    return {"vault": vault, "points": [doc(r) for r in live], "forgotten": [doc(r) for r in gone]}


def overview_doc(plane: ControlPlane) -> dict[str, Any]:
    found = []
    for v in overview.views(plane.catalog, plane.registry):
        c = v.coverage
        found.append(
            {
                "vault": v.name,
                "dedup": v.factors.dedup,
                "compression": v.factors.compression,
                "factors_missing": v.factors.why or None,
                "verify": {
                    "last_run": c.listed,
                    "damaged_objects": c.damaged,
                    "damage_job": c.damage_job,
                    "points": v.counts,
                },
            }
        )
    return {"vaults": found}


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    @app.get(
        "/v1/items/{item}/points",
        responses=oa.responses(404, s200=oa.json_body("the item's points, verify states")),
    )
    async def item_points(request: Request, item: str) -> Response:
        async def work(token: TokenRow) -> Response:
            return JSONResponse(await run_in_threadpool(points_doc, plane, item))

        return await run(Call(request, "item-points", obj=item), work, ("admin",))

    @app.get(
        "/v1/vault-overview",
        responses=oa.responses(s200=oa.json_body("each vault's factors and verify state")),
    )
    async def vault_overview(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            return JSONResponse(await run_in_threadpool(overview_doc, plane))

        return await run(Call(request, "vault-overview"), work, ("admin",))

"""The routes: objects of a vault (data plane), and vaults, tokens and audit (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from strongroom.errors import ObjectNotFound
from strongroom.server import approvals, pointmeta
from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server, object_info
from strongroom.server.approvals import PendingApproval
from strongroom.server.auth import ApiError, new_token, require_role
from strongroom.server.gateway import kind_of
from strongroom.server.scoping import check_sources
from strongroom.storage.backend import ObjectInfo
from strongroom.storage.http import (
    POINT_META_HEADER,
    SOURCE_HEADER,
    SOURCES_HEADER,
    decode_source,
    decode_sources,
    encode_source,
)

OCTETS = "application/octet-stream"
JSON = "application/json"


def add_object_routes(app: FastAPI, server: Server) -> None:
    base = "/v1/vaults/{vault}"

    @app.get(base + "/objects", responses=oa.responses())
    async def list_objects(request: Request, vault: str, prefix: str = "") -> Response:
        call = Call(request, "list", vault, prefix)

        async def work() -> Response:
            token = await server.auth(call)
            gw = await server.gateway(call)
            infos = [] if gw is None else await run_in_threadpool(gw.list, token, prefix)
            return JSONResponse({"objects": [_listed(*listed) for listed in infos]})

        return await server.run(call, work)

    @app.get(
        base + "/objects/{name:path}",
        response_class=Response,
        responses=oa.responses(s200=oa.binary("the object, or the range asked for")),
    )
    async def get_object(
        request: Request,
        vault: str,
        name: str,
        offset: Annotated[int | None, Query(ge=0)] = None,
        length: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        call = Call(request, "get", vault, name)

        async def work() -> Response:
            token = await server.auth(call)
            gw = await server.gateway(call)
            if gw is None:
                kind_of(name)
                raise ObjectNotFound(name)
            data = await run_in_threadpool(gw.get, token, name, offset, length)
            headers = {}
            if name.startswith("points/"):
                source = await run_in_threadpool(gw.scope.point_source, name)
                if source is not None:
                    headers[SOURCE_HEADER] = encode_source(source)
            return Response(data, media_type=OCTETS, headers=headers)

        return await server.run(call, work)

    @app.get(base + "/stat/{name:path}", responses=oa.responses())
    async def stat_object(request: Request, vault: str, name: str) -> Response:
        call = Call(request, "stat", vault, name)

        async def work() -> Response:
            token = await server.auth(call)
            gw = await server.gateway(call)
            if gw is None:
                kind_of(name)
                raise ObjectNotFound(name)
            return JSONResponse(object_info(await run_in_threadpool(gw.stat, token, name)))

        return await server.run(call, work)

    @app.put(
        base + "/objects/{name:path}",
        openapi_extra=oa.binary_request(),
        response_class=Response,
        responses=oa.responses(
            408,
            409,
            413,
            s200=oa.empty("the object was there already with these bytes"),
            s201=oa.empty("stored"),
            s202=oa.json_body("a settings change waits for a second admin: its id"),
        ),
    )
    async def put_object(request: Request, vault: str, name: str) -> Response:
        call = Call(request, "put", vault, name)

        async def work() -> Response:
            token = await server.auth(call)
            kind = kind_of(name)
            # an admin's first key slot creates a vault the catalog does not know yet (init)
            gw = await server.gateway(call, create=kind.name == "keys")
            if gw is None:
                raise ApiError(404, f"no vault {vault!r} on this server", "no-vault")
            source = _source(request.headers.get(SOURCE_HEADER))
            named = _sources(request.headers.get(SOURCES_HEADER))
            if source is not None:
                call.detail = f"source {source!r}, "
            if named:
                call.detail = f"for sources {', '.join(map(repr, named))}, "
            facts = _facts(kind.name, name, source, request.headers.get(POINT_META_HEADER))
            try:
                created, size = await server.put(request, gw, token, name, (source, named))
            except PendingApproval as pending:
                row = pending.approval
                call.detail = f"{row.summary}: approval {row.id} pending"
                return JSONResponse({"approval": row.id, "summary": row.summary}, 202)
            if facts is not None:  # the dashboard's mirror, once the point is stored
                await run_in_threadpool(pointmeta.record, server.catalog, vault, facts)
            call.detail += f"{size} bytes" + ("" if created else ", existed")
            return Response(status_code=201 if created else 200)

        return await server.run(call, work)

    @app.delete(
        base + "/objects/{name:path}",
        response_class=Response,
        responses=oa.responses(s204=oa.empty("deleted")),
    )
    async def delete_object(request: Request, vault: str, name: str) -> Response:
        call = Call(request, "delete", vault, name)

        async def work() -> Response:
            token = await server.auth(call)
            gw = await server.gateway(call)
            if gw is None:
                kind_of(name)
                raise ObjectNotFound(name)
            await run_in_threadpool(gw.delete, token, name)
            return Response(status_code=204)

        return await server.run(call, work)


class TokenRequest(BaseModel):
    role: str
    sources: list[str] = Field(default_factory=list)
    expires_days: float | None = None
    label: str = ""


def add_admin_routes(app: FastAPI, server: Server) -> None:
    async def admin(call: Call, what: str) -> None:
        require_role(await server.auth(call), ("admin",), what)

    @app.get("/v1/vaults", responses=oa.responses())
    async def list_vaults(request: Request) -> Response:
        call = Call(request, "vault-list")

        async def work() -> Response:
            await admin(call, "list vaults")
            rows = await run_in_threadpool(server.catalog.vaults)
            return JSONResponse({"vaults": [{"name": n, "location": loc} for n, loc in rows]})

        return await server.run(call, work)

    @app.post("/v1/vaults/{vault}", responses=oa.responses(409, s201=oa.json_body("created")))
    async def create_vault(request: Request, vault: str) -> Response:
        call = Call(request, "vault-create", vault)

        async def work() -> Response:
            await admin(call, "create vaults")
            location = await run_in_threadpool(server.vaults.create, vault)
            return JSONResponse({"name": vault, "location": location}, 201)

        return await server.run(call, work)

    schema = TokenRequest.model_json_schema()
    token_body = {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}

    @app.post(
        "/v1/tokens",
        openapi_extra=token_body,
        responses=oa.responses(s201=oa.json_body("the token, shown once")),
    )
    async def create_token(request: Request) -> Response:
        call = Call(request, "token-create")

        async def work() -> Response:
            await admin(call, "create tokens")
            assert call.token is not None
            try:
                body = TokenRequest.model_validate_json(await server.body(request))
            except ValidationError as exc:
                raise ApiError(400, f"invalid token request: {_first_error(exc)}") from None
            made = new_token(
                body.role,
                sources=check_sources(body.role, body.sources),
                expires_days=body.expires_days,
                label=body.label,
                created_by=call.token.id,
            )
            await run_in_threadpool(server.catalog.add_token, made.row)
            call.obj, call.detail = made.row.id, f"role {made.row.role}"
            return JSONResponse({**made.row.public(), "token": made.secret}, 201)

        return await server.run(call, work)

    @app.get("/v1/tokens", responses=oa.responses())
    async def list_tokens(request: Request) -> Response:
        call = Call(request, "token-list")

        async def work() -> Response:
            await admin(call, "list tokens")
            rows = await run_in_threadpool(server.catalog.tokens)
            return JSONResponse({"tokens": [r.public() for r in rows]})

        return await server.run(call, work)

    @app.delete(
        "/v1/tokens/{token_id}",
        response_class=Response,
        responses=oa.responses(s204=oa.empty("revoked")),
    )
    async def revoke_token(request: Request, token_id: str) -> Response:
        call = Call(request, "token-revoke", obj=token_id)

        async def work() -> Response:
            await admin(call, "revoke tokens")
            revoked = await run_in_threadpool(server.catalog.revoke_token, token_id)
            server.forget_tokens()
            if not revoked:
                raise ApiError(404, f"no token {token_id}", "no-token")
            return Response(status_code=204)

        return await server.run(call, work)

    @app.get("/v1/audit", responses=oa.responses())
    async def audit(
        request: Request, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
    ) -> Response:
        call = Call(request, "audit")

        async def work() -> Response:
            await admin(call, "read the audit log")
            await run_in_threadpool(server.audit.flush)  # rows still queued are shown too
            rows = await run_in_threadpool(server.catalog.audit_log, limit)
            return JSONResponse({"entries": [r.to_dict() for r in rows]})

        return await server.run(call, work)


def add_approval_routes(app: FastAPI, server: Server) -> None:
    async def admin(call: Call, what: str) -> None:
        require_role(await server.auth(call), ("admin",), what)

    @app.get("/v1/approvals", responses=oa.responses())
    async def list_approvals(request: Request) -> Response:
        call = Call(request, "approval-list")

        async def work() -> Response:
            await admin(call, "list approval requests")
            rows = await run_in_threadpool(server.catalog.approvals)
            return JSONResponse({"approvals": [r.public() for r in rows]})

        return await server.run(call, work)

    @app.post("/v1/approvals/{approval_id}", responses=oa.responses(409))
    async def approve(request: Request, approval_id: str) -> Response:
        call = Call(request, "approve", obj=approval_id)

        async def work() -> Response:
            await admin(call, "approve changes")
            assert call.token is not None
            row = await run_in_threadpool(server.catalog.approval, approval_id)
            if row is None:
                raise ApiError(404, f"no approval request {approval_id}", "no-approval")
            call.vault = row.vault
            gw = await server.gateway(call)
            if gw is None:
                raise ApiError(404, f"no vault {row.vault!r} on this server", "no-vault")
            approver = approvals.token_actor(call.token)
            done = await run_in_threadpool(gw.approve, approver, approval_id)
            call.detail = f"{done.summary}, asked by {done.requested_by}, approved by {approver.id}"
            return JSONResponse(done.public())

        return await server.run(call, work)

    @app.delete(
        "/v1/approvals/{approval_id}",
        response_class=Response,
        responses=oa.responses(s204=oa.empty("rejected")),
    )
    async def reject(request: Request, approval_id: str) -> Response:
        call = Call(request, "approval-reject", obj=approval_id)

        async def work() -> Response:
            await admin(call, "reject changes")
            assert call.token is not None
            decided = server.catalog.decide
            by = approvals.token_actor(call.token).id
            if not await run_in_threadpool(decided, approval_id, by, "rejected"):
                raise ApiError(404, f"no pending approval request {approval_id}", "no-approval")
            return Response(status_code=204)

        return await server.run(call, work)


def _facts(
    kind: str, name: str, source: str | None, header: str | None
) -> pointmeta.PointFacts | None:
    if kind != "points" or source is None or header is None:
        return None
    return pointmeta.parse(name.rpartition("/")[2], source, header)


def _source(header: str | None) -> str | None:
    try:
        return None if header is None else decode_source(header)
    except ValueError:
        raise ApiError(400, f"{SOURCE_HEADER} is not percent-encoded UTF-8") from None


def _sources(header: str | None) -> list[str]:
    try:
        return [] if header is None else decode_sources(header)
    except ValueError:
        raise ApiError(400, f"{SOURCES_HEADER} is not percent-encoded UTF-8") from None


def _listed(info: ObjectInfo, source: str | None, sources: list[str]) -> dict[str, Any]:
    listed = object_info(info)
    if source is not None:
        listed["source"] = source
    if sources:
        listed["sources"] = sources
    return listed


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"

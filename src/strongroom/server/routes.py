"""The routes: objects of a vault (data plane), and vaults, tokens and audit (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from strongroom.errors import ObjectNotFound
from strongroom.server.app import Call, Server, _info
from strongroom.server.auth import ApiError, new_token, require_role
from strongroom.server.gateway import kind_of

OCTETS = "application/octet-stream"
JSON = "application/json"


def add_object_routes(app: FastAPI, server: Server) -> None:
    base = "/v1/vaults/{vault}"

    @app.get(base + "/objects")
    async def list_objects(request: Request, vault: str, prefix: str = "") -> Response:
        call = Call(request, "list", vault, prefix)

        async def work() -> Response:
            await server.auth(call)
            gw = await server.gateway(call)
            infos = [] if gw is None else await run_in_threadpool(gw.list, prefix)
            return JSONResponse({"objects": [_info(i) for i in infos]})

        return await server.run(call, work)

    @app.get(base + "/objects/{name:path}")
    async def get_object(
        request: Request,
        vault: str,
        name: str,
        offset: Annotated[int | None, Query(ge=0)] = None,
        length: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        call = Call(request, "get", vault, name)

        async def work() -> Response:
            await server.auth(call)
            gw = await server.gateway(call)
            if gw is None:
                kind_of(name)
                raise ObjectNotFound(name)
            data = await run_in_threadpool(gw.get, name, offset, length)
            return Response(data, media_type=OCTETS)

        return await server.run(call, work)

    @app.get(base + "/stat/{name:path}")
    async def stat_object(request: Request, vault: str, name: str) -> Response:
        call = Call(request, "stat", vault, name)

        async def work() -> Response:
            await server.auth(call)
            gw = await server.gateway(call)
            if gw is None:
                kind_of(name)
                raise ObjectNotFound(name)
            return JSONResponse(_info(await run_in_threadpool(gw.stat, name)))

        return await server.run(call, work)

    @app.put(base + "/objects/{name:path}", openapi_extra=_binary_body())
    async def put_object(request: Request, vault: str, name: str) -> Response:
        call = Call(request, "put", vault, name)

        async def work() -> Response:
            token = await server.auth(call)
            kind = kind_of(name)
            # an admin's first key slot creates a vault the catalog does not know yet (init)
            gw = await server.gateway(call, create=kind.name == "keys")
            if gw is None:
                raise ApiError(404, f"no vault {vault!r} on this server", "no-vault")
            async with server.upload_slot(request):
                data = await server.body(request)
                created = await run_in_threadpool(gw.put, token, name, data)
            call.detail = f"{len(data)} bytes" + ("" if created else ", existed")
            return Response(status_code=201 if created else 200)

        return await server.run(call, work)

    @app.delete(base + "/objects/{name:path}")
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

    @app.get("/v1/vaults")
    async def list_vaults(request: Request) -> Response:
        call = Call(request, "vault-list")

        async def work() -> Response:
            await admin(call, "list vaults")
            rows = await run_in_threadpool(server.catalog.vaults)
            return JSONResponse({"vaults": [{"name": n, "location": loc} for n, loc in rows]})

        return await server.run(call, work)

    @app.post("/v1/vaults/{vault}")
    async def create_vault(request: Request, vault: str) -> Response:
        call = Call(request, "vault-create", vault)

        async def work() -> Response:
            await admin(call, "create vaults")
            location = await run_in_threadpool(server.vaults.create, vault)
            return JSONResponse({"name": vault, "location": location}, 201)

        return await server.run(call, work)

    schema = TokenRequest.model_json_schema()
    token_body = {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}

    @app.post("/v1/tokens", openapi_extra=token_body)
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
                sources=body.sources,
                expires_days=body.expires_days,
                label=body.label,
                created_by=call.token.id,
            )
            await run_in_threadpool(server.catalog.add_token, made.row)
            call.obj, call.detail = made.row.id, f"role {made.row.role}"
            return JSONResponse({**made.row.public(), "token": made.secret}, 201)

        return await server.run(call, work)

    @app.get("/v1/tokens")
    async def list_tokens(request: Request) -> Response:
        call = Call(request, "token-list")

        async def work() -> Response:
            await admin(call, "list tokens")
            rows = await run_in_threadpool(server.catalog.tokens)
            return JSONResponse({"tokens": [r.public() for r in rows]})

        return await server.run(call, work)

    @app.delete("/v1/tokens/{token_id}")
    async def revoke_token(request: Request, token_id: str) -> Response:
        call = Call(request, "token-revoke", obj=token_id)

        async def work() -> Response:
            await admin(call, "revoke tokens")
            if not await run_in_threadpool(server.catalog.revoke_token, token_id):
                raise ApiError(404, f"no token {token_id}", "no-token")
            return Response(status_code=204)

        return await server.run(call, work)

    @app.get("/v1/audit")
    async def audit(
        request: Request, limit: Annotated[int, Query(ge=1, le=100_000)] = 1000
    ) -> Response:
        call = Call(request, "audit")

        async def work() -> Response:
            await admin(call, "read the audit log")
            rows = await run_in_threadpool(server.catalog.audit_log, limit)
            return JSONResponse({"entries": [r.to_dict() for r in rows]})

        return await server.run(call, work)


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _binary_body() -> dict[str, Any]:
    """The OpenAPI description of a raw object upload (read from the request, not a model)."""
    return {
        "requestBody": {
            "required": True,
            "content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}},
        }
    }

"""``POST /v1/vaults/V/read``: many ranges of a vault's objects in one request.

A tree restore reads a few coalesced spans per job; with one request each, the fixed cost of
a request (routing, authentication, the audit row, a thread hop: about a millisecond of
server CPU) outweighed the bytes.  This route answers a list of ``(name, offset, length)``
with the bytes of each (framed, :mod:`strongroom.storage.batch`).  It is authorized exactly
like ``GET .../objects/NAME`` of each name (the vault gateway for the token's role, then the
token's source scope), once per distinct name in the request, and it is one audit row naming
the objects read.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from strongroom.errors import ObjectNotFound
from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import TokenRow
from strongroom.server.gateway import VaultGateway, kind_of
from strongroom.storage.batch import MAX_BYTES, MAX_RANGES, frame

_MAX_OFFSET = 1 << 62
_MAX_REQUEST = 1 << 20
"""The most bytes of JSON a read request may send (MAX_RANGES ranges fit many times over)."""
_NAMES_SHOWN = 8


class ReadRange(BaseModel):
    name: str = Field(min_length=1, max_length=1024)
    offset: int = Field(ge=0, le=_MAX_OFFSET)
    length: int = Field(ge=0, le=MAX_BYTES)


class ReadRequest(BaseModel):
    ranges: list[ReadRange] = Field(min_length=1, max_length=MAX_RANGES)


def read_ranges(gw: VaultGateway, token: TokenRow, ranges: list[ReadRange]) -> list[bytes]:
    """The bytes of each range; every name is judged as a read of it alone would be."""
    judged: set[str] = set()
    for r in ranges:
        if r.name not in judged:
            gw.scope.check_read(token, kind_of(r.name).name, r.name)
            judged.add(r.name)
    return [gw.backend.get_range(r.name, r.offset, r.length) for r in ranges]


def _parse(body: bytes) -> list[ReadRange]:
    try:
        ranges = ReadRequest.model_validate_json(body).ranges
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"invalid read request: {where}: {first['msg']}") from None
    if sum(r.length for r in ranges) > MAX_BYTES:
        raise ApiError(400, f"a read request may ask for at most {MAX_BYTES} bytes in all")
    return ranges


def _detail(ranges: list[ReadRange], sent: int) -> str:
    names = list(dict.fromkeys(r.name for r in ranges))
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return f"{len(ranges)} ranges, {sent} bytes of {shown}{more}"


def add_routes(app: FastAPI, server: Server) -> None:
    schema = ReadRequest.model_json_schema()
    body = {"requestBody": {"required": True, "content": {oa.JSON: {"schema": schema}}}}

    @app.post(
        "/v1/vaults/{vault}/read",
        openapi_extra=body,
        response_class=Response,
        responses=oa.responses(
            413, s200=oa.binary("each range's bytes after its length (8 bytes, big-endian)")
        ),
    )
    async def read_objects(request: Request, vault: str) -> Response:
        call = Call(request, "read", vault)

        async def work() -> Response:
            token = await server.auth(call)
            gw = await server.gateway(call)
            raw = await server.body(request, _MAX_REQUEST)
            ranges = _parse(raw)
            call.obj = ranges[0].name
            if gw is None:
                kind_of(ranges[0].name)
                raise ObjectNotFound(ranges[0].name)
            parts = await run_in_threadpool(read_ranges, gw, token, ranges)
            call.detail = _detail(ranges, sum(len(p) for p in parts))
            return Response(frame(parts), media_type=oa.OCTETS)

        return await server.run(call, work)

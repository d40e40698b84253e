"""The relay between the dashboard and the agents: browse, fetch and restore requests.

The server holds no vault key, so it cannot read a point itself (``docs/server.md``,
"Restores from the browser").  A browser's request becomes a short request for an online
agent holding the passphrase; the agent long-polls ``GET /v1/agent/relay`` for them, does
the work with the engines and answers over its own authenticated requests:

- ``POST /v1/agent/relay/{id}/data``: the answer's bytes as one streamed (chunked) body,
  handed to the waiting browser request piece by piece through a queue of a few pieces:
  nothing is stored, memory per transfer is bounded, and a browser that stops reading
  stops the agent (its upload blocks, then times out);
- ``POST /v1/agent/relay/{id}/fail``: why it could not.

Restores to an agent are jobs (``kind = 'restore'``, progress, log and result through the
job routes as backups); the relay only hands the job to the chosen agent.  Requests live in
this server process's memory: with several server processes an agent must poll the one the
browser talks to (``docs/server.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import field
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from strongroom.errors import StrongroomError
from strongroom.records import dataclass
from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.routes import runner
from strongroom.server.control.store import Item

START_S = 30.0
"""How long a browser request waits for its agent to start answering."""
IDLE_S = 60.0
"""The longest pause in a transfer, either side, before it is dropped."""
TRANSFER_MAX_S = 6 * 3600.0
ONLINE_S = 90.0
"""An agent that polled the relay this recently counts as online."""
QUEUE_PIECES = 8
MAX_PENDING = 32
MAX_ANSWER = 32 * 1024 * 1024
"""The largest answer read whole (a listing); downloads are streamed, never held."""


class TransferBroken(StrongroomError):
    """The agent's answer broke off: the browser's download fails rather than ends short."""


@dataclass(eq=False)
class Transfer:
    id: str
    machine: str
    doc: dict[str, Any]
    created: float
    started: asyncio.Event = field(default_factory=asyncio.Event)
    pieces: asyncio.Queue[bytes | TransferBroken | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_PIECES)
    )
    mime: str = "application/octet-stream"
    name: str = ""
    error: str | None = None
    answering: bool = False
    gone: bool = False


class Relay:
    """Pending requests per machine and transfers under way (this process's event loop)."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[Transfer]] = {}
        self.transfers: dict[str, Transfer] = {}
        self.wakeup: dict[str, asyncio.Event] = {}
        self.polled: dict[str, float] = {}

    def online(self, machine: str) -> bool:
        return time.monotonic() - self.polled.get(machine, -1e9) < ONLINE_S

    def submit(self, machine: str, doc: dict[str, Any]) -> Transfer:
        queue = self.pending.setdefault(machine, deque())
        if len(queue) >= MAX_PENDING:
            raise ApiError(429, f"agent {machine} has {MAX_PENDING} requests waiting", "busy")
        t = Transfer(secrets.token_hex(16), machine, doc, time.monotonic())
        t.doc["id"] = t.id
        queue.append(t)
        self.transfers[t.id] = t
        self.wakeup.setdefault(machine, asyncio.Event()).set()
        return t

    async def take(self, machine: str, wait: float) -> dict[str, Any] | None:
        """The next request for ``machine``, waiting up to ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            self.polled[machine] = time.monotonic()
            queue = self.pending.get(machine, deque())
            while queue:
                t = queue.popleft()
                if t.gone or time.monotonic() - t.created > START_S:
                    # expired: a browser stopped waiting, or a restore job is left to the
                    # job queue (re-queued when lost, then claimed as any job: never twice)
                    self.drop(t)
                    continue
                if t.doc.get("kind") == "restore":  # a job: nothing comes back through here
                    self.drop(t)
                return t.doc
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            event = self.wakeup.setdefault(machine, asyncio.Event())
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, 5.0))

    def drop(self, t: Transfer) -> None:
        t.gone = True
        self.transfers.pop(t.id, None)

    async def open(self, machine: str, doc: dict[str, Any]) -> Transfer:
        """Send a request to ``machine``'s agent and wait until it starts answering."""
        if not self.online(machine):
            raise ApiError(
                409,
                f"agent {machine} is not online (it has not polled the server in the last "
                f"{ONLINE_S:.0f} s): run `strongroom agent run` there",
                "offline",
            )
        t = self.submit(machine, doc)
        try:
            await asyncio.wait_for(t.started.wait(), START_S)
        except TimeoutError:
            self.drop(t)
            raise ApiError(504, f"agent {machine} did not answer within {START_S:.0f} s") from None
        if t.error is not None:
            self.drop(t)
            raise ApiError(502, f"agent {machine}: {t.error}", "agent-error")
        return t

    async def stream(self, t: Transfer) -> AsyncIterator[bytes]:
        """The answer's pieces as they come; raises if it breaks off."""
        try:
            while True:
                try:
                    piece = await asyncio.wait_for(t.pieces.get(), IDLE_S)
                except TimeoutError:
                    raise TransferBroken(f"agent {t.machine} stopped sending") from None
                if piece is None:
                    return
                if isinstance(piece, TransferBroken):
                    raise piece
                yield piece
        finally:
            self.drop(t)

    async def read_all(self, t: Transfer) -> bytes:
        out = bytearray()
        try:
            async for piece in self.stream(t):
                out += piece
                if len(out) > MAX_ANSWER:
                    raise ApiError(502, f"agent {t.machine}: answer larger than {MAX_ANSWER}")
        except TransferBroken as exc:
            raise ApiError(502, str(exc), "agent-error") from None
        return bytes(out)

    async def receive(self, t: Transfer, request: Request) -> int:
        """Pass the agent's upload on to the browser's request, piece by piece."""
        t.answering = True
        t.mime = request.headers.get("content-type", t.mime)
        t.name = request.headers.get("x-name", "")[:255]
        t.started.set()
        total, deadline = 0, time.monotonic() + TRANSFER_MAX_S
        try:
            async for piece in request.stream():
                if t.gone:
                    raise ApiError(409, "the browser stopped reading", "gone")
                if not piece:
                    continue
                total += len(piece)
                await asyncio.wait_for(t.pieces.put(piece), IDLE_S)
                if time.monotonic() > deadline:
                    raise ApiError(408, "the transfer took too long", "timeout")
        except ClientDisconnect:
            await self._break(t, "the agent's upload broke off")
            raise ApiError(400, "upload broke off", "refused") from None
        except TimeoutError:
            self.drop(t)
            raise ApiError(409, "the browser stopped reading", "gone") from None
        except ApiError:
            await self._break(t, "the transfer was stopped")
            raise
        await asyncio.wait_for(t.pieces.put(None), IDLE_S)
        return total

    async def _break(self, t: Transfer, why: str) -> None:
        try:
            await asyncio.wait_for(t.pieces.put(TransferBroken(why)), 1.0)
        except TimeoutError:
            self.drop(t)


def create_restore_job(
    plane: ControlPlane, item: Item, vault: str, agent: str, spec: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """A running ``restore`` job of ``item`` held by ``agent``, and the work the agent gets
    (the same keys a claimed job has)."""
    now = plane.clock.now()
    payload = {**spec, "agent": agent}
    with plane.catalog.tx() as db:
        job = None
        for bump in range(100):  # (item, kind, scheduled) is unique: two restores a tick
            job = plane.jobs.enqueue(db, item.name, "restore", now + bump * 1e-3, now, payload)
            if job is not None:
                break
        if job is None:
            raise ApiError(409, f"too many restores of {item.name} at once", "exists")
        db.execute(
            "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, agent = ? WHERE id = ?",
            (now, now, agent, job),
        )
        plane.jobs.log(db, job, now, [f"restore handed to agent {agent}"])
    work = {
        "job": job,
        "kind": "restore",
        "item": item.name,
        "item_kind": item.kind,
        "vault": vault,
        "source": item.source,
        **payload,
    }
    return job, work


def install(app: FastAPI, server: Server, plane: ControlPlane, relay: Relay) -> None:
    """The agents' relay routes."""
    run = runner(server)

    async def machine_of(token: TokenRow) -> str:
        name = await run_in_threadpool(plane.defs.machine_of_token, token.id)
        if name is None:
            raise ApiError(403, "this token is not an agent's", "forbidden")
        return name

    def transfer(rid: str, machine: str) -> Transfer:
        t = relay.transfers.get(rid)
        if t is None or t.machine != machine or t.answering or t.gone:
            raise ApiError(404, "no such request (answered, or expired)", "not-found")
        return t

    @app.get(
        "/v1/agent/relay",
        responses=oa.responses(s200=oa.json_body("a request"), s204=oa.empty("none for now")),
    )
    async def poll(request: Request, wait: Annotated[float, Query(ge=0, le=60)] = 0) -> Response:
        async def work(token: TokenRow) -> Response:
            doc = await relay.take(await machine_of(token), wait)
            return Response(status_code=204) if doc is None else JSONResponse(doc)

        return await run(Call(request, "relay-poll"), work, ("backup",))

    @app.post(
        "/v1/agent/relay/{rid}/data", responses=oa.responses(408, 409, s200=oa.json_body("ok"))
    )
    async def data(request: Request, rid: str) -> Response:
        call = Call(request, "relay-data", obj=rid[:32])

        async def work(token: TokenRow) -> Response:
            t = transfer(rid, await machine_of(token))
            total = await relay.receive(t, request)
            call.detail = f"{t.doc.get('kind')} of {t.doc.get('item')}: {total} bytes"
            return JSONResponse({"bytes": total})

        return await run(call, work, ("backup",))

    @app.post("/v1/agent/relay/{rid}/fail", responses=oa.responses(s200=oa.json_body("ok")))
    async def fail(request: Request, rid: str) -> Response:
        call = Call(request, "relay-fail", obj=rid[:32])

        async def work(token: TokenRow) -> Response:
            t = transfer(rid, await machine_of(token))
            try:
                doc = json.loads(await server.body(request))
                reason = str(doc.get("reason", "failed"))[:500]
            except (ValueError, AttributeError):
                raise ApiError(400, "invalid request: a JSON object with a reason") from None
            t.error, call.detail = reason, reason
            t.started.set()
            return JSONResponse({"ok": True})

        return await run(call, work, ("backup",))

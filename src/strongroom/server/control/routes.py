"""The control plane's routes: agents (enrol, jobs, progress, results), and for admins
policies, items, machines, jobs, alerts and the Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.auth import ApiError, new_token, require_role
from strongroom.server.catalog import TokenRow
from strongroom.server.control import metrics
from strongroom.server.control.jobs import Result
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.store import AGENT_SOURCE, Item, Policy, check_name, parse_window

JSON = "application/json"
MAX_WAIT_S = 60.0
POLL_S = 0.25
M = TypeVar("M", bound=BaseModel)
BIG = 2**62
JobId = Annotated[int, Path(ge=1, le=BIG)]


class RegisterBody(BaseModel):
    name: str


class PolicyBody(BaseModel):
    name: str
    vault: str
    schedule: str
    window: str | None = None
    retries: int = Field(0, ge=0, le=100)
    retry_delay: float = Field(10.0, ge=0, le=1e6)
    consistency: str = "auto"
    grace: float = Field(60.0, ge=0, le=1e7)
    keep_last: int = Field(0, ge=0, le=1_000_000)
    keep_hourly: int = Field(0, ge=0, le=1_000_000)
    keep_daily: int = Field(0, ge=0, le=1_000_000)
    keep_weekly: int = Field(0, ge=0, le=1_000_000)
    keep_monthly: int = Field(0, ge=0, le=1_000_000)
    keep_yearly: int = Field(0, ge=0, le=1_000_000)


class ItemBody(BaseModel):
    name: str
    kind: str
    machine: str
    targets: list[str]
    excludes: list[str] = Field(default_factory=list)
    policy: str


class ProgressBody(BaseModel):
    bytes_read: int = Field(0, ge=0, le=BIG)
    files: int = Field(0, ge=0, le=BIG)
    percent: float | None = None
    eta: float | None = None
    log: list[str] = Field(default_factory=list)


class ResultBody(BaseModel):
    state: str
    point: str | None = None
    bytes_read: int = Field(0, ge=0, le=BIG)
    bytes_added: int = Field(0, ge=0, le=BIG)
    files: int = Field(0, ge=0, le=BIG)
    reason: str | None = None
    log: list[str] = Field(default_factory=list)
    logical: int = Field(0, ge=0, le=BIG)


class AlertBody(BaseModel):
    kind: str
    address: str
    smtp: str | None = None


def json_body_spec(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {JSON: {"schema": schema}}}}


async def parse_json(server: Server, request: Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await server.body(request))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"invalid request: {where}: {first['msg']}") from None


def install(app: FastAPI, server: Server) -> ControlPlane:
    """Add the control plane's routes and run its scheduler while the app runs."""
    plane = ControlPlane(server.catalog, server.vaults)
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with previous(a) as state:
            plane.start()
            try:
                yield state
            finally:
                await run_in_threadpool(plane.stop)

    app.router.lifespan_context = lifespan
    _agent_routes(app, server, plane)
    _definition_routes(app, server, plane)
    _job_routes(app, server, plane)
    _alert_routes(app, server, plane)
    from strongroom.server.control import upkeep_routes

    upkeep_routes.install(app, server, plane)
    return plane


def runner(
    server: Server,
) -> Callable[
    [Call, Callable[[TokenRow], Awaitable[Response]], tuple[str, ...]], Awaitable[Response]
]:
    async def run(
        call: Call, work: Callable[[TokenRow], Awaitable[Response]], roles: tuple[str, ...]
    ) -> Response:
        async def frame() -> Response:
            token = await server.auth(call)
            require_role(token, roles, f"use the control plane ({call.action})")
            return await work(token)

        return await server.run(call, frame)

    return run


def _agent_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    async def machine_of(call: Call, token: TokenRow) -> str:
        name = await run_in_threadpool(plane.defs.machine_of_token, token.id)
        if name is None:
            raise ApiError(403, "this token is not an agent's", "forbidden")
        client = call.request.client.host if call.request.client else None
        await run_in_threadpool(plane.defs.seen, name, plane.clock.now(), client)
        return name

    @app.post(
        "/v1/agent/register",
        openapi_extra=json_body_spec(RegisterBody),
        responses=oa.responses(409, s201=oa.json_body("the machine's token, shown once")),
    )
    async def register(request: Request) -> Response:
        call = Call(request, "register-agent")

        async def work(token: TokenRow) -> Response:
            body = await parse_json(server, request, RegisterBody)
            name = check_name(body.name, "machine")
            made = new_token(
                "backup", sources=[AGENT_SOURCE + name], label=f"agent {name}", created_by=token.id
            )
            await run_in_threadpool(plane.defs.add_machine, name, made.row.id, plane.clock.now())
            await run_in_threadpool(server.catalog.add_token, made.row)
            call.obj, call.detail = name, f"token {made.row.id}"
            return JSONResponse({"machine": name, "token": made.secret, "id": made.row.id}, 201)

        return await run(call, work, ("enrol", "admin"))

    @app.get(
        "/v1/agent/jobs",
        responses=oa.responses(s200=oa.json_body("a job to run"), s204=oa.empty("no job for now")),
    )
    async def next_job(
        request: Request, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0
    ) -> Response:
        call = Call(request, "agent-poll")

        async def work(token: TokenRow) -> Response:
            machine = await machine_of(call, token)
            deadline = time.monotonic() + wait
            while True:
                found = await run_in_threadpool(plane.claim, machine)
                if found is not None:
                    call.obj = str(found[0].id)
                    return JSONResponse(found[1])
                if time.monotonic() >= deadline or await request.is_disconnected():
                    return Response(status_code=204)
                await asyncio.sleep(POLL_S)

        return await run(call, work, ("backup",))

    @app.post(
        "/v1/agent/jobs/{job_id}/progress",
        openapi_extra=json_body_spec(ProgressBody),
        responses=oa.responses(s200=oa.json_body("whether to cancel")),
    )
    async def progress(request: Request, job_id: JobId) -> Response:
        call = Call(request, "agent-progress", obj=str(job_id))

        async def work(token: TokenRow) -> Response:
            machine = await machine_of(call, token)
            body = await parse_json(server, request, ProgressBody)
            cancel = await run_in_threadpool(
                plane.jobs.progress, job_id, machine, plane.clock.now(), body.model_dump()
            )
            return JSONResponse({"cancel": cancel})

        return await run(call, work, ("backup",))

    @app.post(
        "/v1/agent/jobs/{job_id}/result",
        openapi_extra=json_body_spec(ResultBody),
        responses=oa.responses(409, s200=oa.json_body("the job as recorded")),
    )
    async def result(request: Request, job_id: JobId) -> Response:
        call = Call(request, "agent-result", obj=str(job_id))

        async def work(token: TokenRow) -> Response:
            machine = await machine_of(call, token)
            body = await parse_json(server, request, ResultBody)
            outcome = Result(
                body.state,
                body.point,
                body.bytes_read,
                body.bytes_added,
                body.files,
                body.reason,
                body.logical,
            )
            job = await run_in_threadpool(plane.finish, job_id, machine, outcome, body.log)
            call.detail = f"{job.kind} of {job.item}: {job.state}"
            return JSONResponse(job.public())

        return await run(call, work, ("backup",))


def _definition_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    @app.post(
        "/v1/policies",
        openapi_extra=json_body_spec(PolicyBody),
        responses=oa.responses(409, s201=oa.json_body("created")),
    )
    async def create_policy(request: Request) -> Response:
        call = Call(request, "policy-create")

        async def work(token: TokenRow) -> Response:
            b = await parse_json(server, request, PolicyBody)
            start, end = parse_window(b.window) if b.window else (None, None)
            policy = Policy(
                b.name,
                b.vault,
                b.schedule,
                start,
                end,
                b.retries,
                b.retry_delay,
                b.consistency,
                b.grace,
                b.keep_last,
                b.keep_hourly,
                b.keep_daily,
                b.keep_weekly,
                b.keep_monthly,
                b.keep_yearly,
                plane.clock.now(),
            )
            await run_in_threadpool(plane.defs.add_policy, policy)
            call.obj = b.name
            return JSONResponse({f: getattr(policy, f) for f in Policy.__slots__}, 201)

        return await run(call, work, ("admin",))

    @app.get("/v1/policies", responses=oa.responses(s200=oa.json_body("every policy")))
    async def list_policies(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            rows = await run_in_threadpool(plane.defs.policies)
            return JSONResponse(
                {"policies": [{f: getattr(p, f) for f in Policy.__slots__} for p in rows]}
            )

        return await run(Call(request, "policy-list"), work, ("admin",))

    @app.post(
        "/v1/items",
        openapi_extra=json_body_spec(ItemBody),
        responses=oa.responses(409, s201=oa.json_body("protected")),
    )
    async def protect(request: Request) -> Response:
        call = Call(request, "protect")

        async def work(token: TokenRow) -> Response:
            b = await parse_json(server, request, ItemBody)
            item = Item(
                b.name,
                b.kind,
                b.machine,
                b.targets,
                b.excludes,
                b.policy,
                created=plane.clock.now(),
            )
            await run_in_threadpool(plane.protect, item)
            server.forget_tokens()  # the machine's token now reaches the item's source
            call.obj = b.name
            return JSONResponse({"item": b.name}, 201)

        return await run(call, work, ("admin",))

    @app.get("/v1/items", responses=oa.responses(s200=oa.json_body("items and their health")))
    async def list_items(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            return JSONResponse({"items": await run_in_threadpool(plane.items_view)})

        return await run(Call(request, "item-list"), work, ("admin",))

    @app.get("/v1/machines", responses=oa.responses(s200=oa.json_body("registered machines")))
    async def list_machines(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            return JSONResponse({"machines": await run_in_threadpool(plane.defs.machines)})

        return await run(Call(request, "machine-list"), work, ("admin",))


def _job_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    @app.get("/v1/jobs", responses=oa.responses(s200=oa.json_body("newest jobs first")))
    async def list_jobs(
        request: Request,
        item: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Response:
        async def work(token: TokenRow) -> Response:
            rows = await run_in_threadpool(plane.jobs.history, item, limit)
            return JSONResponse({"jobs": [j.public() for j in rows]})

        return await run(Call(request, "job-list"), work, ("admin",))

    @app.get("/v1/jobs/{job_id}", responses=oa.responses(s200=oa.json_body("the job, its log")))
    async def show_job(request: Request, job_id: JobId) -> Response:
        async def work(token: TokenRow) -> Response:
            job = await run_in_threadpool(plane.jobs.get, job_id)
            lines = await run_in_threadpool(plane.jobs.lines, job_id)
            return JSONResponse({**job.public(), "log": lines})

        return await run(Call(request, "job-show", obj=str(job_id)), work, ("admin",))

    @app.post("/v1/jobs/{job_id}/cancel", responses=oa.responses(409, s200=oa.json_body("state")))
    async def cancel_job(request: Request, job_id: JobId) -> Response:
        async def work(token: TokenRow) -> Response:
            state = await run_in_threadpool(plane.jobs.cancel, job_id, plane.clock.now())
            return JSONResponse({"job": job_id, "state": state})

        return await run(Call(request, "job-cancel", obj=str(job_id)), work, ("admin",))

    @app.post(
        "/v1/items/{item}/backup-now",
        responses=oa.responses(409, s201=oa.json_body("the queued job")),
    )
    async def backup_now(request: Request, item: str) -> Response:
        async def work(token: TokenRow) -> Response:
            job = await run_in_threadpool(plane.backup_now, item)
            return JSONResponse({"job": job, "item": item}, 201)

        return await run(Call(request, "backup-now", obj=item), work, ("admin",))


def _alert_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    run = runner(server)

    @app.post(
        "/v1/alerts",
        openapi_extra=json_body_spec(AlertBody),
        responses=oa.responses(409, s201=oa.json_body("the alert target")),
    )
    async def add_alert(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            b = await parse_json(server, request, AlertBody)
            target = await run_in_threadpool(
                plane.alerts.add_target, b.kind, b.address, b.smtp, plane.clock.now()
            )
            return JSONResponse(target.public(), 201)

        return await run(Call(request, "alert-add"), work, ("admin",))

    @app.get("/v1/alerts", responses=oa.responses(s200=oa.json_body("alert targets, raised")))
    async def list_alerts(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            targets = await run_in_threadpool(plane.alerts.targets)
            active = await run_in_threadpool(plane.alerts.active)
            return JSONResponse({"targets": [t.public() for t in targets], "raised": active})

        return await run(Call(request, "alert-list"), work, ("admin",))

    @app.get(
        "/metrics",
        response_class=Response,
        responses=oa.responses(
            s200={
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        ),
    )
    async def prometheus(request: Request) -> Response:
        async def work(token: TokenRow) -> Response:
            text = await run_in_threadpool(metrics.render, plane)
            return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

        return await run(Call(request, "metrics"), work, ("admin",))

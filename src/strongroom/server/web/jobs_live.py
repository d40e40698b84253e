"""The dashboard's jobs: the pages (``jobs_html``), the filtered and paginated history, and
server-sent events that follow running jobs.

The events are read from the catalog (polled twice a second), never from an in-process
queue: the agent may report to any of several servers sharing one PostgreSQL catalog, and the
browser's stream may be held by another.  A stream is a GET with the session cookie (no CSRF:
it changes nothing), sends a job's state whenever it changes, its new log lines, and an
``end`` event once the job is over, then closes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.server.control.jobs import FINAL, Job
from strongroom.server.control.plane import ControlPlane
from strongroom.server.web import frame, jobs_html
from strongroom.server.web.frame import html
from strongroom.server.web.jobs_html import Filters
from strongroom.server.web.users import Session

JobId = Annotated[int, Path(ge=1, le=2**62)]
PAGE_SIZE = 25
POLL_S = 0.5
KEEPALIVE_S = 15.0
SESSION_CHECK_S = 10.0
RUNNING_SHOWN = 100
_COLUMNS = ", ".join(Job.__slots__)
_DAY = 86400.0


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    _pages(app, server, plane)
    _events(app, server, plane)


def history(catalog: Catalog, f: Filters, page: int) -> tuple[list[dict[str, Any]], bool]:
    """One page of the jobs ``f`` selects, newest first, and whether older ones follow."""
    where: list[str] = []
    args: list[object] = []
    for column in ("item", "state", "kind"):
        if getattr(f, column):
            where.append(f"{column} = ?")
            args.append(getattr(f, column))
    if f.since:
        where.append("created >= ?")
        args.append(_day(f.since, "from"))
    if f.until:
        where.append("created < ?")
        args.append(_day(f.until, "until") + _DAY)
    sql = f"SELECT {_COLUMNS} FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    with catalog.read() as db:
        rows = db.execute(sql, (*args, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)).fetchall()
    return [Job(*r).public() for r in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


def running(catalog: Catalog) -> list[dict[str, Any]]:
    with catalog.read() as db:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('queued', 'running')"
            " ORDER BY id DESC LIMIT ?",
            (RUNNING_SHOWN,),
        ).fetchall()
    return [Job(*r).public() for r in rows]


def _day(text: str, what: str) -> float:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ApiError(400, f"created {what}: not a day (YYYY-MM-DD): {text[:20]!r}") from None


def _pages(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    @app.get("/ui/jobs", include_in_schema=False)
    async def job_list(
        request: Request,
        item: str = "",
        state: str = "",
        kind: str = "",
        since: str = "",
        until: str = "",
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    ) -> Response:
        f = Filters(item[:64], state[:20], kind[:20], since[:10], until[:10])

        async def build(who: Session) -> Response:
            rows, more = await run_in_threadpool(history, server.catalog, f, page)
            now = await run_in_threadpool(running, server.catalog)
            names = [str(i.name) for i in await run_in_threadpool(plane.defs.items)]
            return html(jobs_html.jobs_page(who, now, rows, names, f, page, more))

        return await frame.page(server, request, build)

    @app.get("/ui/jobs/{job_id}", include_in_schema=False)
    async def job(request: Request, job_id: JobId) -> Response:
        async def build(who: Session) -> Response:
            found = (await run_in_threadpool(plane.jobs.get, job_id)).public()
            lines = await run_in_threadpool(plane.jobs.lines, job_id)
            return html(jobs_html.job_page(who, found, lines))

        return await frame.page(server, request, build)


def _events(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    @app.get("/ui/events/jobs/{job_id}", include_in_schema=False)
    async def one_job(request: Request, job_id: JobId, lines: int = 0) -> Response:
        if await frame.who(server, request) is None:
            return Response("not logged in", 401, headers=frame.SECURITY_HEADERS)
        seen = max(lines, 0)

        def poll() -> tuple[dict[str, Any] | None, bool]:
            nonlocal seen
            try:
                doc = plane.jobs.get(job_id).public()
            except ApiError:
                return None, True  # expired meanwhile: nothing more to follow
            log = plane.jobs.lines(job_id)
            doc["log"] = [{"time": x["time"], "line": x["line"]} for x in log[seen:]]
            seen = len(log)
            return doc, doc["state"] in FINAL

        return _stream(server, request, poll)

    @app.get("/ui/events/jobs", include_in_schema=False)
    async def all_running(request: Request) -> Response:
        if await frame.who(server, request) is None:
            return Response("not logged in", 401, headers=frame.SECURITY_HEADERS)
        followed: set[int] = set()

        def poll() -> tuple[dict[str, Any] | None, bool]:
            now = running(server.catalog)
            ended = followed - {int(j["id"]) for j in now}
            # the jobs that ended since the last look, once, so their rows show the outcome
            gone = [plane.jobs.get(i).public() for i in sorted(ended) if _exists(plane, i)]
            followed.clear()
            followed.update(int(j["id"]) for j in now)
            return {"jobs": now + gone}, not now

        return _stream(server, request, poll)


def _exists(plane: ControlPlane, job_id: int) -> bool:
    try:
        plane.jobs.get(job_id)
    except ApiError:
        return False
    return True


Poll = Callable[[], tuple[dict[str, Any] | None, bool]]


def _stream(server: Server, request: Request, poll: Poll) -> Response:
    headers = {**frame.SECURITY_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _events_of(server, request, poll), media_type="text/event-stream", headers=headers
    )


async def _events_of(server: Server, request: Request, poll: Poll) -> AsyncIterator[bytes]:
    """Each change ``poll`` sees as a ``data:`` event; ``end`` when it says the job is over,
    or the session ended (logged out, expired)."""
    yield b"retry: 3000\n\n"
    last = ""
    sent = checked = time.monotonic()
    while True:
        doc, over = await run_in_threadpool(poll)
        # a change of state or numbers, or new log lines (each sent once)
        key = "" if doc is None else json.dumps({**doc, "log": []}, sort_keys=True)
        if doc is not None and (key != last or doc.get("log")):
            yield f"data: {json.dumps(doc, sort_keys=True)}\n\n".encode()
            last, sent = key, time.monotonic()
        elif time.monotonic() - sent > KEEPALIVE_S:
            yield b": keep-alive\n\n"
            sent = time.monotonic()
        if time.monotonic() - checked > SESSION_CHECK_S:
            checked = time.monotonic()
            over = over or await frame.who(server, request) is None
        if over:
            yield b"event: end\ndata: {}\n\n"
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL_S)

"""The dashboard's routes: ``POST /v1/users`` (admin token), login and logout, the pages at
``/`` and ``/ui/...``, their writes, and the static files."""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from strongroom.server import openapi as oa
from strongroom.server.app import Call, Server
from strongroom.server.auth import ApiError, new_token, require_role
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.routes import json_body_spec, parse_json
from strongroom.server.scoping import check_sources
from strongroom.server.web import (
    admin_routes,
    frame,
    items_routes,
    jobs_live,
    pages,
    points_pages,
    users,
)
from strongroom.server.web import overview as vault_overview
from strongroom.server.web.frame import Form, html, redirect
from strongroom.server.web.throttle import LoginThrottle
from strongroom.server.web.users import Session

DAY = 86400.0
JobId = Annotated[int, Path(ge=1, le=2**62)]
STATIC = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
}
WRITERS = ("admin", "operator")
AUDIT_ROWS = 200


class UserBody(BaseModel):
    name: str
    role: str
    password: str


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    _user_api(app, server)
    _login_routes(app, server)
    _page_routes(app, server, plane)
    jobs_live.install(app, server, plane)
    points_pages.install(app, server, plane)
    _job_writes(app, server, plane)
    _token_routes(app, server)
    items_routes.install(app, server, plane)
    admin_routes.install(app, server, plane)
    _static_routes(app)
    from strongroom.server.web import restore_routes, settings_routes

    relay = restore_routes.install(app, server, plane)
    settings_routes.install(app, server, plane, relay)
    from strongroom.server.web import dashboard_api

    dashboard_api.install(app, server, plane)


def _user_api(app: FastAPI, server: Server) -> None:
    @app.post(
        "/v1/users",
        openapi_extra=json_body_spec(UserBody),
        responses=oa.responses(409, s201=oa.json_body("the user was created")),
    )
    async def add_user(request: Request) -> Response:
        call = Call(request, "user-add")

        async def work() -> Response:
            token = await server.auth(call)
            require_role(token, ("admin",), "add dashboard users")
            body = await parse_json(server, request, UserBody)
            call.obj, call.detail = body.name, f"role {body.role}"
            await run_in_threadpool(
                users.add_user, server.catalog, body.name, body.role, body.password, token.id
            )
            return JSONResponse({"user": body.name, "role": body.role}, 201)

        return await server.run(call, work)


def _login_routes(app: FastAPI, server: Server) -> None:
    throttle = LoginThrottle()

    def form_page(request: Request, error: str = "", status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(24)  # login CSRF: a double-submitted cookie
        response = html(pages.login_page(nonce, error), status)
        frame.set_cookie(request, response, frame.LOGIN_COOKIE, nonce, "/ui/login")
        return response

    @app.get("/ui/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        if await frame.who(server, request) is not None:
            return redirect("/")
        return form_page(request)

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        try:
            form = frame.parse_form(await server.body(request))
        except ApiError as exc:
            return html(pages.error_page(exc.status, exc.reason, None), exc.status)
        nonce = request.cookies.get(frame.LOGIN_COOKIE, "")
        name = form.get("user", "")[:64]
        if not nonce or not secrets.compare_digest(nonce, form.get(frame.CSRF_FIELD, "")):
            return form_page(request, "The form had expired: please log in again.", 403)
        client = request.client.host if request.client else ""
        wait = throttle.wait(name, client)
        if wait > 0:
            await run_in_threadpool(frame.audit, server, request, "ui-login", name, None, 429)
            return form_page(request, f"Too many failed logins: try again in {wait:.0f} s.", 429)
        try:
            sid, who = await run_in_threadpool(
                users.login, server.catalog, name, form.get("password", "")
            )
        except ApiError as exc:
            throttle.failed(name, client)
            await run_in_threadpool(frame.audit, server, request, "ui-login", name, None, 401)
            return form_page(request, exc.reason, 401)
        throttle.succeeded(name, client)
        await run_in_threadpool(frame.audit, server, request, "ui-login", name, who.role, 303)
        response = redirect("/")
        frame.set_cookie(request, response, frame.SESSION_COOKIE, sid, "/")
        response.delete_cookie(frame.LOGIN_COOKIE, path="/ui/login")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        async def work(who: Session, form: Form) -> Response:
            sid = request.cookies.get(frame.SESSION_COOKIE, "")
            await run_in_threadpool(users.logout, server.catalog, sid)
            response = redirect("/ui/login")
            response.delete_cookie(frame.SESSION_COOKIE, path="/")
            return response

        return await frame.write(server, request, "logout", frame.EVERYONE, work)


def _page_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    def jobs(item: str | None, limit: int) -> list[dict[str, Any]]:
        return [j.public() for j in plane.jobs.history(item, limit)]

    @app.get("/", include_in_schema=False)
    async def overview(request: Request) -> Response:
        async def build(who: Session) -> Response:
            items = await run_in_threadpool(plane.items_view)
            since = plane.clock.now() - DAY
            recent = [
                j for j in await run_in_threadpool(jobs, None, 10_000) if j["created"] >= since
            ]
            vaults = await run_in_threadpool(vault_overview.views, server.catalog, server.vaults)
            return html(pages.overview(who, items, recent, vault_overview.sections(vaults)))

        return await frame.page(server, request, build)

    @app.get("/ui/items", include_in_schema=False)
    async def items(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return html(pages.items_page(who, await run_in_threadpool(plane.items_view)))

        return await frame.page(server, request, build)


def _job_writes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    @app.post("/ui/jobs/{job_id}/cancel", include_in_schema=False)
    async def cancel(request: Request, job_id: JobId) -> Response:
        async def work(who: Session, form: Form) -> Response:
            await run_in_threadpool(plane.jobs.cancel, job_id, plane.clock.now())
            return redirect(f"/ui/jobs/{job_id}")

        return await frame.write(server, request, "cancel-job", WRITERS, work)

    @app.post("/ui/items/{item}/backup-now", include_in_schema=False)
    async def backup_now(request: Request, item: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            job_id = await run_in_threadpool(plane.backup_now, item)
            return redirect(f"/ui/jobs/{job_id}")

        return await frame.write(server, request, "backup-now", WRITERS, work)


def _token_routes(app: FastAPI, server: Server) -> None:
    def listing() -> list[dict[str, Any]]:
        return [t.public() for t in reversed(server.catalog.tokens())]

    @app.get("/ui/tokens", include_in_schema=False)
    async def tokens(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return html(pages.tokens_page(who, await run_in_threadpool(listing)))

        return await frame.page(server, request, build, ("admin",))

    @app.get("/ui/audit", include_in_schema=False)
    async def audit(request: Request) -> Response:
        async def build(who: Session) -> Response:
            rows = await run_in_threadpool(server.catalog.audit_log, AUDIT_ROWS)
            return html(pages.audit_page(who, [a.to_dict() for a in reversed(rows)]))

        return await frame.page(server, request, build, ("admin",))

    @app.post("/ui/tokens", include_in_schema=False)
    async def create(request: Request) -> Response:
        async def work(who: Session, form: Form) -> Response:
            role = form.get("role", "")
            wanted = [s.strip() for s in form.get("sources", "").split(",") if s.strip()]
            made = new_token(
                role,
                sources=check_sources(role, wanted),
                expires_days=_days(form.get("expires_days", "")),
                label=form.get("label", "")[:200],
                created_by=f"user:{who.user}",
            )
            await run_in_threadpool(server.catalog.add_token, made.row)
            return html(pages.tokens_page(who, await run_in_threadpool(listing), made.secret))

        return await frame.write(server, request, "create-token", ("admin",), work)

    @app.post("/ui/tokens/{token_id}/revoke", include_in_schema=False)
    async def revoke(request: Request, token_id: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            revoked = await run_in_threadpool(server.catalog.revoke_token, token_id)
            server.forget_tokens()  # refused from the next request on, cached or not
            if not revoked:
                raise ApiError(404, f"no token {token_id}", "not-found")
            return redirect("/ui/tokens")

        return await frame.write(server, request, "revoke-token", ("admin",), work)


def _days(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ApiError(400, f"expires: not a number of days: {text[:20]!r}") from None


def _static_routes(app: FastAPI) -> None:
    @app.get("/ui/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        data = (resources.files("strongroom.server.web") / "static" / name).read_bytes()
        headers = {**frame.SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return Response(data, media_type=STATIC[name], headers=headers)

"""The frame every dashboard request runs in: the session from its cookie, CSRF and role
checks for writes, security headers, HTML error pages and the audit log."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import AuditEntry
from strongroom.server.web import pages, users
from strongroom.server.web.users import Session

SESSION_COOKIE = "sr_session"
LOGIN_COOKIE = "sr_login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
EVERYONE = users.USER_ROLES
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Form = dict[str, str]


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status, headers=SECURITY_HEADERS)


def redirect(to: str) -> Response:
    return RedirectResponse(to, 303, headers=SECURITY_HEADERS)


def set_cookie(request: Request, response: Response, name: str, value: str, path: str) -> None:
    secure = request.url.scheme == "https"
    response.set_cookie(
        name,
        value,
        path=path,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=int(users.SESSION_HOURS * 3600),
    )


def parse_form(body: bytes) -> Form:
    try:
        fields = parse_qs(body.decode(errors="replace"), keep_blank_values=True, max_num_fields=50)
    except ValueError:
        raise ApiError(400, "too many form fields") from None
    return {k: v[0] for k, v in fields.items()}


async def who(server: Server, request: Request) -> Session | None:
    sid = request.cookies.get(SESSION_COOKIE)
    return await run_in_threadpool(users.session, server.catalog, sid)


def audit(
    server: Server,
    request: Request,
    action: str,
    user: str | None,
    role: str | None,
    status: int,
    detail: str = "",
) -> None:
    server.catalog.audit(
        AuditEntry(
            time=time.time(),
            token=None,
            role=role,
            client=request.client.host if request.client else None,
            method=request.method,
            vault=None,
            action=action,
            target=None,
            status=status,
            detail=f"user {user}" + (f": {detail}" if detail else "") if user else detail,
        )
    )


async def page(
    server: Server,
    request: Request,
    build: Callable[[Session], Awaitable[Response]],
    roles: tuple[str, ...] = EVERYONE,
) -> Response:
    """A page for a logged-in user of one of ``roles`` (else the login form, or 403)."""
    user = await who(server, request)
    if user is None:
        return redirect("/ui/login")
    try:
        if user.role not in roles:
            raise ApiError(403, f"a {user.role} may not see this page", "forbidden")
        return await build(user)
    except ApiError as exc:
        return html(pages.error_page(exc.status, exc.reason, user), exc.status)


async def write(
    server: Server,
    request: Request,
    action: str,
    roles: tuple[str, ...],
    work: Callable[[Session, Form], Awaitable[Response]],
) -> Response:
    """A state-changing request: a live session, its CSRF token (form field or header) and a
    role allowed to ``action``; refused with 401 or 403 otherwise. Audited either way (with
    ``request.state.audit`` as the detail, where ``work`` set one)."""
    user = await who(server, request)
    detail = ""
    try:
        if user is None:
            raise ApiError(401, "not logged in (or the session has expired)", "unauthenticated")
        form = parse_form(await server.body(request))
        sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD, "")
        if not hmac.compare_digest(sent.encode(), user.csrf.encode()):
            raise ApiError(403, "missing or wrong CSRF token: reload the page", "csrf")
        if user.role not in roles:
            raise ApiError(403, f"a {user.role} may not {action.replace('-', ' ')}", "forbidden")
        response = await work(user, form)
        detail = str(getattr(request.state, "audit", ""))
    except ApiError as exc:
        response = html(pages.error_page(exc.status, exc.reason, user), exc.status)
        detail = exc.reason
    name, role = (user.user, user.role) if user else (None, None)
    await run_in_threadpool(
        audit, server, request, f"ui-{action}", name, role, response.status_code, detail
    )
    return response

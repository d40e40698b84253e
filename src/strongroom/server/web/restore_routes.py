"""The dashboard's restore routes: an item's points, browsing a point, downloads, restores.

Roles (``docs/server.md``): every user sees an item's points and browses them (names, sizes,
modes, times: what the job logs show too); downloading contents and restoring need an
operator or an admin, and every POST its CSRF token.  The work is done by an agent through
:mod:`strongroom.server.control.relay`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.control import relay as relaying
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.relay import Relay
from strongroom.server.control.store import Item
from strongroom.server.web import frame, restore_pages
from strongroom.server.web.frame import Form, html, redirect
from strongroom.server.web.pages import WRITERS
from strongroom.server.web.users import Session

POINT = re.compile(r"[0-9a-f]{8,64}")
MAX_PATHS = 100
FILES_KEYS = ("on_conflict", "target")
IMAGE_KEYS = ("disk", "to", "format", "attach", "attach_to", "connect", "mode", "name", "disk_dir")
FLAGS = ("verify", "dry_run", "force", "start")
INSTANT_ENDS = ("instant-finalize", "instant-abort")


def install(app: FastAPI, server: Server, plane: ControlPlane) -> Relay:
    relay = Relay()
    relaying.install(app, server, plane, relay)
    _page_routes(app, server, plane, relay)
    _write_routes(app, server, plane, relay)
    return relay


class _Ctx:
    """What every restore route needs: the item, its vault, the agents."""

    def __init__(self, plane: ControlPlane, item_name: str, point: str = "00000000") -> None:
        if not POINT.fullmatch(point):
            raise ApiError(404, f"no point {point[:70]!r}", "not-found")
        item = plane.defs.item(item_name)
        if item is None:
            raise ApiError(404, f"no item {item_name!r}", "no-item")
        policy = plane.defs.policy(item.policy)
        self.item: Item = item
        self.point = point
        self.vault = policy.vault if policy else ""
        self.agents = [str(m["name"]) for m in plane.defs.machines()]

    def agent(self, wanted: str) -> str:
        chosen = wanted or self.item.machine
        if chosen not in self.agents:
            raise ApiError(404, f"no agent {chosen[:70]!r}", "no-machine")
        return chosen

    def doc(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "item": self.item.name,
            "vault": self.vault,
            "source": self.item.source,
            "point": self.point,
            **extra,
        }


def _page_routes(app: FastAPI, server: Server, plane: ControlPlane, relay: Relay) -> None:
    @app.get("/ui/items/{item}/points/{point}/browse", include_in_schema=False)
    async def browse(
        request: Request, item: str, point: str, path: str = "/", agent: str = ""
    ) -> Response:
        async def build(who: Session) -> Response:
            ctx = await run_in_threadpool(_Ctx, plane, item, point)
            machine = ctx.agent(agent)
            t = await relay.open(machine, ctx.doc("browse", path=path[:4096]))
            listing = shown(json.loads(await relay.read_all(t)))
            page = restore_pages.browse_page(who, item, point, listing, ctx.agents, machine)
            return html(page)

        return await frame.page(server, request, build)

    @app.get("/ui/items/{item}/points/{point}/restore-image", include_in_schema=False)
    async def image_form(request: Request, item: str, point: str, agent: str = "") -> Response:
        async def build(who: Session) -> Response:
            ctx = await run_in_threadpool(_Ctx, plane, item, point)
            page = restore_pages.image_page(who, item, point, ctx.agents, ctx.agent(agent))
            return html(page)

        return await frame.page(server, request, build, WRITERS)

    @app.get("/ui/items/{item}/points/{point}/instant", include_in_schema=False)
    async def instants(request: Request, item: str, point: str, agent: str = "") -> Response:
        async def build(who: Session) -> Response:
            ctx = await run_in_threadpool(_Ctx, plane, item, point)
            machine = ctx.agent(agent)
            t = await relay.open(machine, ctx.doc("instants"))
            rows = json.loads(await relay.read_all(t))
            page = restore_pages.instant_page(who, item, point, rows, ctx.agents, machine)
            return html(page)

        return await frame.page(server, request, build, WRITERS)


def _write_routes(app: FastAPI, server: Server, plane: ControlPlane, relay: Relay) -> None:
    @app.post("/ui/items/{item}/points/{point}/download", include_in_schema=False)
    async def download(request: Request, item: str, point: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            ctx = await run_in_threadpool(_Ctx, plane, item, point)
            fmt = form.get("format", "file")
            if fmt not in ("file", "zip", "tar"):
                raise ApiError(400, "format must be file, zip or tar")
            doc = ctx.doc("fetch", path=form.get("path", "/")[:4096], format=fmt)
            t = await relay.open(ctx.agent(form.get("agent", "")), doc)
            name = quote(t.name or "download", safe="")
            headers = {
                **frame.SECURITY_HEADERS,
                "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            }
            return StreamingResponse(relay.stream(t), media_type=t.mime, headers=headers)

        return await frame.write(server, request, "download", WRITERS, work)

    @app.post("/ui/items/{item}/points/{point}/restore", include_in_schema=False)
    async def restore(request: Request, item: str, point: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            ctx = await run_in_threadpool(_Ctx, plane, item, point)
            machine = ctx.agent(form.get("agent", ""))
            spec = restore_spec(form, ctx.point)
            if not relay.online(machine):
                raise ApiError(409, f"agent {machine} is not online: run `strongroom agent run`")
            job, doc = await run_in_threadpool(
                relaying.create_restore_job, plane, ctx.item, ctx.vault, machine, spec
            )
            relay.submit(machine, doc)
            return redirect(f"/ui/jobs/{job}")

        return await frame.write(server, request, "restore", WRITERS, work)


def restore_spec(form: Form, point: str) -> dict[str, Any]:
    """The job's payload from the form: the CLI's options of ``restore files|disk|vm`` and
    ``instant finalize|abort``; a combination the CLI refuses is refused here (400)."""
    what = form.get("what", "")
    spec: dict[str, Any] = {"what": what, "point": point}
    if what == "files":
        _files_spec(form, spec)
    elif what in ("disk", "vm", "instant"):
        spec.update({k: form[k].strip() for k in IMAGE_KEYS if form.get(k, "").strip()})
    elif what in INSTANT_ENDS:
        name = form.get("name", "").strip()
        if not name:
            raise ApiError(400, "which instant recovery? give its VM's name")
        return {**spec, "name": name}
    else:
        raise ApiError(400, f"what: one of files, disk, vm, instant, {', '.join(INSTANT_ENDS)}")
    spec.update({k: True for k in FLAGS if form.get(k)})
    if what != "files":
        _image_spec(spec)
    return spec


def _files_spec(form: Form, spec: dict[str, Any]) -> None:
    paths = [p.strip() for p in form.get("paths", "").splitlines() if p.strip()]
    if len(paths) > MAX_PATHS:
        raise ApiError(400, f"at most {MAX_PATHS} paths at once")
    spec["paths"] = [] if paths == ["/"] else paths
    spec.update({k: form.get(k, "").strip() for k in FILES_KEYS})
    if not spec["target"]:
        raise ApiError(400, "a target folder on the agent is required")
    if spec["on_conflict"] not in restore_pages.CONFLICTS:
        raise ApiError(400, f"on conflict: one of {', '.join(restore_pages.CONFLICTS)}")


def _image_spec(spec: dict[str, Any]) -> None:
    """``restore disk`` and ``restore vm [--instant]``'s rules on their options."""
    what = spec["what"]
    if what == "disk":
        if not (spec.get("to") or spec.get("attach_to")):
            raise ApiError(400, "a disk restore needs a target path (or a domain to attach to)")
        return
    mode = spec.setdefault("mode", "new")
    if mode not in ("new", "in-place"):
        raise ApiError(400, "mode: new or in-place")
    if mode == "new" and not spec.get("name"):
        how = "instantly as new" if what == "instant" else "as new"
        raise ApiError(400, f"a VM restored {how} needs a name")
    if mode == "in-place":
        spec.pop("name", None)
        if what == "vm" and (spec.get("disk_dir") or spec.get("format")):
            raise ApiError(400, "the disk folder and the format go with a restore as new")
    not_instant = any(spec.get(k) for k in ("format", "verify", "start"))
    if what == "instant" and (not_instant or (spec.get("force") and mode == "new")):
        raise ApiError(
            400,
            "an instant recovery takes a name (as new) or force (in place), a disk folder "
            "and a libvirt URI: not format, verify or start",
        )


def shown(doc: Any) -> Any:
    """A listing with names that are not UTF-8 (their bytes kept by surrogateescape) shown
    with U+FFFD: a page cannot carry them (download their folder as a tar instead)."""
    if isinstance(doc, str):
        return doc.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(doc, list):
        return [shown(x) for x in doc]
    if isinstance(doc, dict):
        return {k: shown(v) for k, v in doc.items()}
    return doc

"""The dashboard's recovery points of an item: the live ones and the forgotten (soft-deleted)
ones, with Undelete.

Which points exist and which are forgotten is read from the vault's storage (``points/`` and
``deleted/``), whose of the item from the catalog's record of each point's source; what they
are (kind, time, consistency, tags, bytes added) from the catalog's mirror
(:mod:`strongroom.server.pointmeta`).  Undelete is the data plane's own path: the gateway
deletes the tombstone under the rules a maintenance (operator) or admin token meets there.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from strongroom.errors import ObjectNotFound
from strongroom.server import pointmeta
from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.catalog import TokenRow
from strongroom.server.control.plane import ControlPlane
from strongroom.server.gateway import VaultGateway
from strongroom.server.web import frame, verifystate
from strongroom.server.web.frame import Form, html, redirect
from strongroom.server.web.pages import WRITERS, csrf_field, e, layout, table, when
from strongroom.server.web.users import Session

POINT_ID = re.compile(r"[0-9a-f]{64}")
TOKEN_ROLE = {"admin": "admin", "operator": "maintenance"}
"""The API role a dashboard role acts with on vault objects (a viewer has none)."""
_READER = TokenRow("dashboard", "admin", b"", [], "the dashboard's listings", 0.0, None, None, None)


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    @app.get("/ui/items/{item}/points", include_in_schema=False)
    async def points(request: Request, item: str) -> Response:
        async def build(who: Session) -> Response:
            vault, live, gone = await run_in_threadpool(listing, plane, item)
            return html(points_page(who, item, vault, live, gone))

        return await frame.page(server, request, build)

    @app.post("/ui/items/{item}/points/{point}/undelete", include_in_schema=False)
    async def undelete(request: Request, item: str, point: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            await run_in_threadpool(undelete_point, plane, who, item, point)
            return redirect(f"/ui/items/{quote(item, safe='')}/points")

        return await frame.write(server, request, "undelete-point", WRITERS, work)


def _where(plane: ControlPlane, item: str) -> tuple[str, str, VaultGateway]:
    """The item's vault name, its points' source and the vault's gateway (404s otherwise)."""
    found = plane.defs.item(item)
    if found is None:
        raise ApiError(404, f"no item {item!r}", "no-item")
    policy = plane.defs.policy(found.policy)
    gateway = None if policy is None else plane.registry.gateway(policy.vault, _READER)
    if policy is None or gateway is None:
        raise ApiError(404, f"the vault of item {item!r} is not on this server", "no-vault")
    return policy.vault, found.source, gateway


def listing(
    plane: ControlPlane, item: str
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The item's vault, its live points and its forgotten ones, newest first."""
    vault, source, gateway = _where(plane, item)
    mine = {
        name.rpartition("/")[2]
        for name, sources in plane.catalog.sources_under(vault, "points/").items()
        if source in sources
    }
    stones = {
        i.name.rpartition("/")[2]: i.mtime for i in gateway.backend.list("deleted/") if i.name
    }
    facts = pointmeta.of_source(plane.catalog, vault, source)
    cover = verifystate.coverage(plane.catalog, vault)
    live, gone = [], []
    for info in gateway.backend.list("points/"):
        pid = info.name.rpartition("/")[2]
        if pid not in mine:
            continue
        row: dict[str, Any] = {"id": pid, "stored": info.mtime, **facts.get(pid, {})}
        # a storage that gives no time: the point counts as newer than any check
        row["verify"] = cover.of(pid, info.mtime if info.mtime is not None else float("inf"))
        if pid in stones:
            gone.append({**row, "forgotten": stones[pid]})
        else:
            live.append(row)
    return vault, sorted(live, key=_newest, reverse=True), sorted(gone, key=_newest, reverse=True)


def _newest(r: dict[str, Any]) -> tuple[str, float]:
    return (str(r.get("time") or ""), float(r["stored"] or 0.0))


def undelete_point(plane: ControlPlane, who: Session, item: str, point: str) -> None:
    """Delete the point's tombstone through the gateway, as the user's API role."""
    if not POINT_ID.fullmatch(point):
        raise ApiError(400, "a point id is 64 hex digits")
    vault, source, gateway = _where(plane, item)
    if source not in plane.catalog.sources_of(vault, "points/" + point):
        raise ApiError(404, f"item {item!r} has no point {point[:12]}", "not-found")
    token = TokenRow(
        f"user:{who.user}", TOKEN_ROLE[who.role], b"", [], "dashboard", 0.0, None, None, None
    )
    try:
        gateway.delete(token, "deleted/" + point)
    except ObjectNotFound:
        raise ApiError(409, f"point {point[:12]} is not forgotten", "exists") from None


def _cells(r: dict[str, Any]) -> str:
    tags = ", ".join(r.get("tags", [])) or "-"
    added = r.get("added")
    return (
        f'<td><code title="{e(r["id"])}">{e(r["id"][:12])}</code></td>'
        f"<td>{e(_time(r))}</td><td>{e(r.get('kind'))}</td><td>{e(r.get('consistency'))}</td>"
        f'<td>{e(_size(added))}</td><td class="verify">{verifystate.cell(r["verify"])}</td>'
        f"<td>{e(tags)}</td>"
    )


def _time(r: dict[str, Any]) -> str:
    text = r.get("time")
    if isinstance(text, str) and len(text) >= 16:
        return text[:16].replace("T", " ") + " UTC"
    return when(r.get("stored"))


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


HEADS = ("Point", "Time", "Kind", "Consistency", "Size added", "Verify", "Tags")


def points_page(
    who: Session, item: str, vault: str, live: list[dict[str, Any]], gone: list[dict[str, Any]]
) -> str:
    def live_row(r: dict[str, Any]) -> str:
        # a live point's id opens it in the browser (restore_routes: browse, download, restore)
        pid = e(r["id"])
        link = (
            f'<a href="/ui/items/{quote(item, safe="")}/points/{pid}/browse">{e(r["id"][:12])}</a>'
        )
        cells = _cells(r).replace(f'<code title="{pid}">{e(r["id"][:12])}</code>', link, 1)
        return f'<tr data-point="{pid}">{cells}</tr>'

    def gone_row(r: dict[str, Any]) -> str:
        action = "-"
        if who.role in WRITERS:
            action = (
                f'<form method="post" action="/ui/items/{quote(item, safe="")}/points/'
                f'{e(r["id"])}/undelete">{csrf_field(who)}<button type="submit" '
                f'aria-label="Undelete point {e(r["id"][:12])}">Undelete</button></form>'
            )
        return (
            f'<tr data-point="{e(r["id"])}">{_cells(r)}'
            f"<td>{when(r.get('forgotten'))}</td><td>{action}</td></tr>"
        )

    body = (
        f"<p>Vault <strong>{e(vault)}</strong>. Open a point to browse it, download files or "
        "restore: an agent that holds the vault's passphrase does that, the server cannot read "
        "a point itself. Forgotten points stay in the vault until a prune "
        "after their soft-delete window; until then they can be brought back.</p>"
        + table("Recovery points, newest first", HEADS, map(live_row, live), "No points yet.")
        + '<p class="note">Verify: <em>verified</em> DATE when the server\'s verify re-hashed '
        "every object the point can use, clean, after it was written (DATE: the oldest of "
        "those checks); <em>pending</em> until then; <em>damage found</em> when any object "
        "of the vault failed its check: the server cannot tell whose, <code>strongroom check "
        "--read-data</code> with the key can. It proves the stored bytes intact, not that "
        "the point decrypts.</p>"
        + "<h2>Forgotten points</h2>"
        + table(
            "Forgotten (soft-deleted) points",
            (*HEADS, "Forgotten", "Actions"),
            map(gone_row, gone),
            "No forgotten points.",
        )
    )
    return layout(f"Recovery points of {item}", body, who, "/ui/items")

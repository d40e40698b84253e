"""Routes of the policy and item forms and of the retention simulator.

Creating and editing goes through the control plane's own checks (``Policy.check``,
``ControlPlane.protect``, :mod:`strongroom.server.control.edits`); a refused form comes back
with its values and the reason.  The simulator plans with ``forget``'s planner over the
item's live points (their storage times, as the server's retention sees them) and changes
nothing, so every role may use it."""

from __future__ import annotations

from dataclasses import replace

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from strongroom.errors import StorageError
from strongroom.server.app import Server
from strongroom.server.auth import ApiError
from strongroom.server.control import edits, retention
from strongroom.server.control.plane import ControlPlane
from strongroom.server.control.store import Item, Policy, parse_window
from strongroom.server.web import frame
from strongroom.server.web import items_pages as ip
from strongroom.server.web.frame import Form, html, redirect
from strongroom.server.web.users import Session
from strongroom.vault.retention import KeepPolicy

MAX_KEEP = 1_000_000


def _int(form: Form | dict[str, str], key: str, top: int = MAX_KEEP) -> int:
    text = form.get(key, "").strip() or "0"
    if not text.isdigit() or int(text) > top:
        raise ApiError(400, f"{key.replace('_', ' ')}: a whole number from 0 to {top}")
    return int(text)


def _float(form: Form, key: str, default: float) -> float:
    text = form.get(key, "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        raise ApiError(400, f"{key.replace('_', ' ')}: not a number: {text[:20]!r}") from None
    if not 0 <= value <= 1e7:
        raise ApiError(400, f"{key.replace('_', ' ')}: from 0 to 10000000")
    return value


def policy_of(form: Form, name: str, created: float) -> Policy:
    window = form.get("window", "").strip()
    start, end = parse_window(window) if window else (None, None)
    last, hourly, daily, weekly, monthly, yearly = _keeps(form)
    return Policy(
        name,
        form.get("vault", "").strip(),
        form.get("schedule", "").strip(),
        start,
        end,
        _int(form, "retries", 100),
        _float(form, "retry_delay", 10.0),
        form.get("consistency", "auto"),
        _float(form, "grace", 60.0),
        last,
        hourly,
        daily,
        weekly,
        monthly,
        yearly,
        created,
    )


def _keeps(form: Form | dict[str, str]) -> tuple[int, int, int, int, int, int]:
    last, hourly, daily, weekly, monthly, yearly = (_int(form, f"keep_{k}") for k in ip.KEEPS)
    return last, hourly, daily, weekly, monthly, yearly


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def install(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    _policy_routes(app, server, plane)
    _item_routes(app, server, plane)
    _simulator_route(app, server, plane)


def _policy_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    def vaults() -> list[str]:
        return [n for n, _ in server.catalog.vaults()]

    async def form_page(who: Session, policy: Policy | None, error: str, status: int) -> Response:
        text = ip.policy_form(who, policy, await run_in_threadpool(vaults), error)
        return html(text, status)

    @app.get("/ui/policies", include_in_schema=False)
    async def policies(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return html(ip.policies_page(who, await run_in_threadpool(plane.defs.policies)))

        return await frame.page(server, request, build)

    @app.get("/ui/new-policy", include_in_schema=False)
    async def new_policy(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return await form_page(who, None, "", 200)

        return await frame.page(server, request, build, ip.DEFINERS)

    @app.get("/ui/policies/{name}/edit", include_in_schema=False)
    async def edit_policy(request: Request, name: str) -> Response:
        async def build(who: Session) -> Response:
            found = await run_in_threadpool(plane.defs.policy, name)
            if found is None:
                raise ApiError(404, f"no policy {name!r}", "no-policy")
            return await form_page(who, found, "", 200)

        return await frame.page(server, request, build, ip.DEFINERS)

    @app.post("/ui/policies", include_in_schema=False)
    async def create(request: Request) -> Response:
        async def work(who: Session, form: Form) -> Response:
            name = form.get("name", "").strip()
            try:
                policy = policy_of(form, name, plane.clock.now())
                await run_in_threadpool(plane.defs.add_policy, policy)
            except ApiError as exc:
                return await form_page(who, _draft(form, name), exc.reason, exc.status)
            return redirect("/ui/policies")

        return await frame.write(server, request, "create-policy", ip.DEFINERS, work)

    @app.post("/ui/policies/{name}/edit", include_in_schema=False)
    async def update(request: Request, name: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            found = await run_in_threadpool(plane.defs.policy, name)
            if found is None:
                raise ApiError(404, f"no policy {name!r}", "no-policy")
            try:
                policy = policy_of(form, name, found.created)
                await run_in_threadpool(
                    edits.update_policy, server.catalog, policy, plane.clock.now()
                )
            except ApiError as exc:
                return await form_page(who, found, exc.reason, exc.status)
            return redirect("/ui/policies")

        return await frame.write(server, request, "edit-policy", ip.DEFINERS, work)


def _draft(form: Form, name: str) -> Policy:
    """The refused form's values, shown again (numbers that do not parse fall back)."""
    return Policy(name, form.get("vault", ""), form.get("schedule", ""))


def _item_routes(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    def choices() -> tuple[list[str], list[str]]:
        machines = [str(m["name"]) for m in plane.defs.machines()]
        return machines, [p.name for p in plane.defs.policies()]

    async def form_page(who: Session, item: Item | None, error: str, status: int) -> Response:
        machines, policies = await run_in_threadpool(choices)
        return html(ip.item_form(who, item, machines, policies, error), status)

    @app.get("/ui/new-item", include_in_schema=False)
    async def new_item(request: Request) -> Response:
        async def build(who: Session) -> Response:
            return await form_page(who, None, "", 200)

        return await frame.page(server, request, build, ip.DEFINERS)

    @app.get("/ui/items/{name}/edit", include_in_schema=False)
    async def edit_item(request: Request, name: str) -> Response:
        async def build(who: Session) -> Response:
            found = await run_in_threadpool(plane.defs.item, name)
            if found is None:
                raise ApiError(404, f"no item {name!r}", "no-item")
            return await form_page(who, found, "", 200)

        return await frame.page(server, request, build, ip.DEFINERS)

    @app.post("/ui/items", include_in_schema=False)
    async def protect(request: Request) -> Response:
        async def work(who: Session, form: Form) -> Response:
            item = _item_of(form, form.get("name", "").strip(), plane.clock.now())
            try:
                await run_in_threadpool(plane.protect, item)
            except ApiError as exc:
                return await form_page(who, replace(item, created=0.0), exc.reason, exc.status)
            server.forget_tokens()  # the machine's token now reaches the item's source
            return redirect("/ui/items")

        return await frame.write(server, request, "protect-item", ip.DEFINERS, work)

    @app.post("/ui/items/{name}/edit", include_in_schema=False)
    async def update(request: Request, name: str) -> Response:
        async def work(who: Session, form: Form) -> Response:
            found = await run_in_threadpool(plane.defs.item, name)
            if found is None:
                raise ApiError(404, f"no item {name!r}", "no-item")
            wanted = _item_of(form, name, found.created)
            args = (wanted.machine, wanted.targets, wanted.excludes, wanted.policy)
            try:
                await run_in_threadpool(
                    edits.update_item, server.catalog, name, *args, plane.clock.now()
                )
            except ApiError as exc:
                shown = replace(found, machine=wanted.machine, targets=wanted.targets)
                return await form_page(who, shown, exc.reason, exc.status)
            server.forget_tokens()  # the machines' scopes changed
            return redirect("/ui/items")

        return await frame.write(server, request, "edit-item", ip.DEFINERS, work)


def _item_of(form: Form, name: str, created: float) -> Item:
    return Item(
        name,
        form.get("kind", "files"),
        form.get("machine", ""),
        _lines(form.get("targets", "")),
        _lines(form.get("excludes", "")),
        form.get("policy", ""),
        created=created,
    )


def _simulator_route(app: FastAPI, server: Server, plane: ControlPlane) -> None:
    def points(item: Item) -> tuple[list[tuple[str, float]], Policy]:
        policy = plane.defs.policy(item.policy)
        if policy is None:
            raise ApiError(404, f"no policy {item.policy!r}", "no-policy")
        try:
            found = retention.live_points(plane.registry, server.catalog, policy.vault, item.source)
        except StorageError as exc:
            raise ApiError(503, f"vault {policy.vault}: {exc}", "storage") from None
        return found, policy

    @app.get("/ui/retention", include_in_schema=False)
    async def simulate(request: Request) -> Response:
        query: dict[str, str] = dict(request.query_params)

        async def build(who: Session) -> Response:
            names = [i.name for i in await run_in_threadpool(plane.defs.items)]
            chosen = str(query.get("item") or (names[0] if names else ""))
            item = await run_in_threadpool(plane.defs.item, chosen) if chosen else None
            if item is None:
                page = ip.simulator_page(who, names, chosen, [0] * 6, None, "", "No such item.")
                return html(page, 404 if chosen else 200)
            live, policy = await run_in_threadpool(points, item)
            given = any(f"keep_{k}" in query for k in ip.KEEPS)
            keep = _keeps(query) if given else policy.keep()
            plan = retention.plan(live, KeepPolicy(*keep))
            if not any(keep):  # the server's retention forgets nothing without a rule
                plan = [(pid, t, ["no keep rule: retention is off"]) for pid, t, _ in plan]
            return html(ip.simulator_page(who, names, chosen, keep, plan, policy.name))

        return await frame.page(server, request, build)

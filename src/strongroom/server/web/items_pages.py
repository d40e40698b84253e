"""The forms that create and edit policies and protected items (HTML only: the routes are in
:mod:`strongroom.server.web.items_routes`)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from strongroom.server.control.store import CONSISTENCY, ITEM_KINDS, Item, Policy
from strongroom.server.web.pages import csrf_field, e, layout, table, when
from strongroom.server.web.users import Session

KEEPS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
DEFINERS = ("admin",)
"""Who may create and edit policies and items: the API's ``/v1/policies`` and ``/v1/items``
take an admin token, so the dashboard's admins only."""


def field(name: str, label: str, value: object = "", hint: str = "", **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{e(v)}"' for k, v in attrs.items())
    described = f' aria-describedby="h-{name}"' if hint else ""
    note = f'<small id="h-{name}">{e(hint)}</small>' if hint else ""
    shown = "" if value is None else value
    return (
        f'<label for="f-{name}">{e(label)}</label>'
        f'<input id="f-{name}" name="{name}" value="{e(shown)}"{described}{extra}>{note}'
    )


def choice(name: str, label: str, options: Sequence[str], chosen: str) -> str:
    opts = "".join(
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o)}</option>'
        for o in options
    )
    select = f'<select id="f-{name}" name="{name}">{opts}</select>'
    return f'<label for="f-{name}">{e(label)}</label>{select}'


def lines(name: str, label: str, values: Sequence[str], hint: str) -> str:
    return (
        f'<label for="f-{name}">{e(label)}</label>'
        f'<textarea id="f-{name}" name="{name}" rows="3" aria-describedby="h-{name}">'
        f'{e(chr(10).join(values))}</textarea><small id="h-{name}">{e(hint)}</small>'
    )


def _alert(error: str) -> str:
    return f'<p class="error" role="alert">{e(error)}</p>' if error else ""


def keep_fields(values: Sequence[int]) -> str:
    return (
        '<fieldset class="keeps"><legend>Retention: keep</legend>'
        + "".join(
            f"<div>{field(f'keep_{k}', k, n, inputmode='numeric', pattern='[0-9]*')}</div>"
            for k, n in zip(KEEPS, values, strict=True)
        )
        + "</fieldset>"
    )


def policies_page(who: Session, policies: list[Policy]) -> str:
    def row(p: Policy) -> str:
        window = f"{p.window_start}-{p.window_end}" if p.window_start else "any time"
        keep = ", ".join(f"{k} {n}" for k, n in zip(KEEPS, p.keep(), strict=True) if n)
        edit = ""
        if who.role in DEFINERS:
            sr = f'<span class="sr"> {e(p.name)}</span>'
            edit = f'<a href="/ui/policies/{quote(p.name)}/edit">Edit{sr}</a>'
        return (
            f'<tr data-policy="{e(p.name)}"><th scope="row">{e(p.name)}</th><td>{e(p.vault)}</td>'
            f"<td>{e(p.schedule)}</td><td>{e(window)}</td><td>{e(keep or 'everything')}</td>"
            f"<td>{p.retries}</td><td>{p.grace:g} min</td><td>{edit}</td></tr>"
        )

    heads = ("Policy", "Vault", "Schedule", "Window", "Keep", "Retries", "Grace", "Actions")
    new = (
        '<p><a class="button" href="/ui/new-policy">New policy</a></p>'
        if who.role in DEFINERS
        else ""
    )
    body = new + table("Policies", heads, map(row, policies), "No policies yet.")
    return layout("Policies", body, who, "/ui/policies")


def policy_form(who: Session, policy: Policy | None, vaults: Sequence[str], error: str = "") -> str:
    p = policy or Policy("", vaults[0] if vaults else "", "02:00")
    editing = policy is not None and bool(policy.created)
    action = f"/ui/policies/{quote(p.name)}/edit" if editing else "/ui/policies"
    window = f"{p.window_start}-{p.window_end}" if p.window_start else ""
    name = (
        f"<p>Policy <strong>{e(p.name)}</strong></p>"
        if editing
        else field("name", "Name", p.name, "letters, digits, '.', '_', '-'", required="")
    )
    vault_list = "".join(f'<option value="{e(v)}"></option>' for v in vaults)
    body = (
        f'{_alert(error)}<form method="post" action="{action}" class="card wide">{csrf_field(who)}'
        f"{name}"
        + field("vault", "Vault", p.vault, "a vault of this server", required="", list="vaults")
        + f'<datalist id="vaults">{vault_list}</datalist>'
        + field(
            "schedule",
            "Schedule",
            p.schedule,
            "UTC, e.g. 02:00 (daily), hourly, mon..fri 22:30, *:0/15",
            required="",
        )
        + field("window", "Start window (UTC, optional)", window, "HH:MM-HH:MM, e.g. 22:00-06:00")
        + field("retries", "Retries", p.retries, inputmode="numeric")
        + field("retry_delay", "Minutes between retries", f"{p.retry_delay:g}", inputmode="decimal")
        + choice("consistency", "Consistency", CONSISTENCY, p.consistency)
        + field("grace", "Grace (minutes before overdue)", f"{p.grace:g}", inputmode="decimal")
        + keep_fields(p.keep())
        + f'<button type="submit">{"Save policy" if editing else "Create policy"}</button></form>'
    )
    title = f"Edit policy {p.name}" if editing else "New policy"
    return layout(title, body, who, "/ui/policies")


def item_form(
    who: Session,
    item: Item | None,
    machines: Sequence[str],
    policies: Sequence[str],
    error: str = "",
) -> str:
    i = item or Item(
        "", "files", machines[0] if machines else "", [], [], policies[0] if policies else ""
    )
    editing = item is not None and bool(item.created)
    action = f"/ui/items/{quote(i.name)}/edit" if editing else "/ui/items"
    head = (
        f"<p>Item <strong>{e(i.name)}</strong> ({e(i.kind)})</p>"
        if editing
        else field(
            "name", "Name", i.name, "also the source its points are stored under", required=""
        )
        + choice("kind", "Kind", ITEM_KINDS, i.kind)
    )
    body = (
        f'{_alert(error)}<form method="post" action="{action}" class="card wide">{csrf_field(who)}'
        + head
        + choice("machine", "Machine (its agent runs the backups)", machines, i.machine)
        + lines("targets", "Paths, domain or image", i.targets, "one per line")
        + lines("excludes", "Excludes", i.excludes, "one pattern per line (files)")
        + choice("policy", "Policy", policies, i.policy)
        + f'<button type="submit">{"Save item" if editing else "Protect item"}</button></form>'
    )
    if not machines:
        body = (
            _alert("No machine is registered: enrol an agent first (strongroom agent enrol).")
            + body
        )
    title = f"Edit item {i.name}" if editing else "Protect an item"
    return layout(title, body, who, "/ui/items")


def simulator_page(
    who: Session,
    items: Sequence[str],
    chosen: str,
    keep: Sequence[int],
    plan: list[tuple[str, float, list[str]]] | None,
    policy: str,
    error: str = "",
) -> str:
    form = (
        '<form method="get" action="/ui/retention" class="card wide">'
        + choice("item", "Item", items, chosen)
        + keep_fields(keep)
        + '<button type="submit">Simulate</button></form>'
    )
    result = ""
    if plan is not None:
        kept = sum(1 for _, _, why in plan if why)

        def row(entry: tuple[str, float, list[str]]) -> str:
            pid, t, why = entry
            verdict = "keep" if why else "forget"
            css = "ok" if why else "failed"
            return (
                f'<tr data-point="{e(pid)}"><td><code>{e(pid[:16])}</code></td><td>{when(t)}</td>'
                f'<td><span class="badge s-{css}">{verdict}</span></td>'
                f"<td>{e(', '.join(why) or 'no rule keeps it')}</td></tr>"
            )

        summary = (
            f'<p role="status" class="verdict">{kept} of {len(plan)} points kept, '
            f"{len(plan) - kept} would be forgotten. Nothing was changed.</p>"
        )
        edit = ""
        if who.role in DEFINERS and policy:
            edit = (
                f'<p><a href="/ui/policies/{quote(policy)}/edit">Edit policy {e(policy)}</a>'
                " to save a rule.</p>"
            )
        result = (
            summary
            + table(
                f"Points of {chosen}, newest first",
                ("Point", "Time", "Verdict", "Why (forget's reasons)"),
                map(row, plan),
                "This item has no points yet.",
            )
            + edit
        )
    return layout("Retention simulator", _alert(error) + form + result, who, "/ui/policies")

"""The dashboard's HTML: a layout and one function per page (every value escaped)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from strongroom.server.web.users import Session

HEALTHS = ("ok", "warning", "failed", "overdue")
JOB_STATES = ("queued", "running", "succeeded", "partial", "failed", "cancelled")
TOKEN_ROLES = ("backup", "restore", "maintenance", "admin", "enrol")
WRITERS = ("admin", "operator")


def when(t: object) -> str:
    if not isinstance(t, int | float):
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def e(value: object) -> str:
    return escape("-" if value is None else str(value))


def layout(title: str, body: str, who: Session | None, current: str = "") -> str:
    nav = ""
    if who is not None:
        links = [("/", "Overview"), ("/ui/items", "Items"), ("/ui/policies", "Policies")]
        links += [("/ui/jobs", "Jobs"), ("/ui/agents", "Agents"), ("/ui/vaults", "Vaults")]
        if who.role == "admin":
            links += [("/ui/tokens", "Tokens"), ("/ui/audit", "Audit log")]
        here = ' aria-current="page"'
        items = "".join(
            f'<li><a href="{h}"{here if h == current else ""}>{t}</a></li>' for h, t in links
        )
        nav = (
            f'<nav aria-label="Main"><ul>{items}</ul></nav>'
            f'<form method="post" action="/ui/logout" class="logout">{csrf_field(who)}'
            f'<span>{e(who.user)} ({e(who.role)})</span> <button type="submit">Log out</button>'
            "</form>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · strongroom</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/ui/static/app.css">'
        '<script src="/ui/static/app.js" defer></script></head><body>'
        f'<header><a class="brand" href="/">strongroom</a>{nav}</header>'
        f'<main id="main"><h1>{e(title)}</h1>{body}</main></body></html>'
    )


def csrf_field(who: Session) -> str:
    return f'<input type="hidden" name="csrf" value="{e(who.csrf)}">'


def table(caption: str, heads: Sequence[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows) or f'<tr><td colspan="{len(heads)}">{e(empty)}</td></tr>'
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in heads)
    return (
        # a focusable region: a keyboard user can scroll a table wider than a phone
        f'<div class="scroll" role="region" tabindex="0" aria-label="{e(caption)}">'
        f"<table><caption>{e(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def badge(state: str) -> str:
    return f'<span class="badge s-{e(state)}">{e(state)}</span>'


def login_page(nonce: str, error: str = "") -> str:
    alert = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return layout(
        "Log in",
        f'{alert}<form method="post" action="/ui/login" class="card login">'
        f'<input type="hidden" name="csrf" value="{e(nonce)}">'
        '<label for="user">User name</label>'
        '<input id="user" name="user" autocomplete="username" required autofocus>'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Log in</button></form>',
        None,
    )


def error_page(status: int, reason: str, who: Session | None) -> str:
    return layout(
        f"Error {status}",
        f'<p class="error" role="alert">{e(reason)}</p><p><a href="/">Back to the overview</a></p>',
        who,
    )


def _stats(pairs: Iterable[tuple[str, int]], label: str) -> str:
    cells = "".join(
        f'<div class="stat s-{e(k)}"><span class="n">{n}</span> <span>{e(k)}</span></div>'
        for k, n in pairs
    )
    return f'<section aria-label="{e(label)}" class="stats">{cells}</section>'


def _item_row(r: dict[str, Any]) -> str:
    name = str(r["name"])
    link = f'<a href="/ui/jobs?item={quote(name)}">{e(name)}</a>'
    return (
        f'<tr data-item="{e(name)}"><td>{link}</td><td>{badge(str(r["health"]))}</td>'
        f"<td>{e(r.get('kind'))}</td><td>{e(r.get('machine'))}</td>"
        f"<td>{when(r.get('last_success'))}</td><td>{when(r.get('next_run'))}</td></tr>"
    )


ITEM_HEADS = ("Item", "Health", "Kind", "Machine", "Last backup", "Next backup")


def overview(
    who: Session, items: list[dict[str, Any]], jobs: list[dict[str, Any]], vaults: str = ""
) -> str:
    health = Counter(str(r["health"]) for r in items)
    states = Counter(str(j["state"]) for j in jobs)
    body = (
        "<h2>Items by health</h2>"
        + _stats(((h, health[h]) for h in HEALTHS), "Items by health")
        + table("Protected items", ITEM_HEADS, map(_item_row, items), "No items yet.")
        + vaults
        + "<h2>Jobs of the last 24 hours</h2>"
        + _stats(((s, states[s]) for s in JOB_STATES), "Jobs of the last 24 hours")
        + _jobs_table(jobs, "Jobs of the last 24 hours")
    )
    return layout("Overview", body, who, "/")


def items_page(who: Session, items: list[dict[str, Any]]) -> str:
    def row(r: dict[str, Any]) -> str:
        button = ""
        if who.role in WRITERS:
            button = (
                f'<form method="post" action="/ui/items/{quote(str(r["name"]))}/backup-now">'
                f'{csrf_field(who)}<button type="submit">Back up now</button></form>'
            )
        name, sr = quote(str(r["name"])), f'<span class="sr"> {e(r["name"])}</span>'
        if who.role == "admin":  # items_pages.DEFINERS
            button += f' <a href="/ui/items/{name}/edit">Edit{sr}</a>'
        button += f' <a href="/ui/retention?item={name}">Retention{sr}</a>'
        points = f'<a href="/ui/items/{quote(str(r["name"]), safe="")}/points">Points</a> '
        extra = f"<td>{e(r.get('policy'))}</td><td>{e(r.get('vault'))}</td>"
        extra += f'<td class="actions">{points}{button}</td>'
        return _item_row(r).replace("</tr>", extra + "</tr>")

    heads = (*ITEM_HEADS, "Policy", "Vault", "Actions")
    new = '<p><a href="/ui/new-item">Protect an item</a></p>' if who.role == "admin" else ""
    body = new + table("Protected items", heads, map(row, items), "No items.")
    return layout("Items", body, who, "/ui/items")


def _jobs_table(jobs: list[dict[str, Any]], caption: str) -> str:
    def row(j: dict[str, Any]) -> str:
        pct = "-" if j.get("percent") is None else f"{float(j['percent']):.0f} %"
        return (
            f'<tr data-job="{j["id"]}"><td><a href="/ui/jobs/{j["id"]}">#{j["id"]}</a></td>'
            f"<td>{e(j['item'])}</td><td>{e(j['kind'])}</td><td>{badge(str(j['state']))}</td>"
            f"<td>{when(j.get('created'))}</td><td>{when(j.get('finished'))}</td><td>{pct}</td>"
            f"<td>{e(j.get('reason') or '')}</td></tr>"
        )

    heads = ("Job", "Item", "Kind", "State", "Created", "Finished", "Progress", "Reason")
    return table(caption, heads, map(row, jobs), "No jobs.")


def tokens_page(who: Session, tokens: list[dict[str, Any]], revealed: str = "") -> str:
    reveal = ""
    if revealed:
        reveal = (
            '<section class="card reveal" role="status"><h2>New token (shown only once)</h2>'
            f'<p><code id="new-token">{e(revealed)}</code></p>'
            '<button type="button" data-copy="new-token">Copy</button></section>'
        )
    roles = "".join(f'<option value="{r}">{r}</option>' for r in TOKEN_ROLES)
    form = (
        f'<form method="post" action="/ui/tokens" class="card">{csrf_field(who)}'
        "<h2>Create a token</h2>"
        f'<label for="t-role">Role</label><select id="t-role" name="role">{roles}</select>'
        '<label for="t-label">Label</label><input id="t-label" name="label" maxlength="200">'
        '<label for="t-sources">Sources (comma separated)</label>'
        '<input id="t-sources" name="sources">'
        '<label for="t-days">Expires in days (empty: never)</label>'
        '<input id="t-days" name="expires_days" inputmode="decimal">'
        '<button type="submit">Create token</button></form>'
    )

    def row(t: dict[str, Any]) -> str:
        action = (
            "revoked " + when(t["revoked"])
            if t["revoked"]
            else (
                f'<form method="post" action="/ui/tokens/{e(t["id"])}/revoke">{csrf_field(who)}'
                f'<button type="submit" class="danger" aria-label="Revoke token {e(t["id"])}">'
                "Revoke</button></form>"
            )
        )
        return (
            f'<tr data-token="{e(t["id"])}"><td><code>{e(t["id"])}</code></td>'
            f"<td>{e(t['role'])}</td><td>{e(t['label'])}</td>"
            f"<td>{e(', '.join(t['sources']) or '-')}</td><td>{when(t['created'])}</td>"
            f"<td>{e(t.get('created_by'))}</td><td>{when(t['expires'])}</td><td>{action}</td></tr>"
        )

    heads = ("Id", "Role", "Label", "Sources", "Created", "Created by", "Expires", "State")
    return layout(
        "Tokens",
        reveal + form + table("Tokens", heads, map(row, tokens), "No tokens."),
        who,
        "/ui/tokens",
    )


def audit_page(who: Session, entries: list[dict[str, Any]]) -> str:
    def row(a: dict[str, Any]) -> str:
        status = int(a["status"])
        state = "ok" if status < 400 else "failed"
        return (
            f"<tr><td>{when(a['time'])}</td><td>{e(a['method'])}</td><td>{e(a['action'])}</td>"
            f"<td>{e(a.get('vault'))}</td><td>{e(a.get('target'))}</td>"
            f"<td>{e(a.get('token'))}</td><td>{e(a.get('role'))}</td><td>{e(a.get('client'))}</td>"
            f'<td><span class="badge s-{state}">{status}</span></td><td>{e(a["detail"])}</td></tr>'
        )

    heads = ["Time", "Method", "Action", "Vault", "Target", "Token", "Role", "Client"]
    heads += ["Status", "Detail"]
    body = table("Newest entries first", heads, map(row, entries), "No entries.")
    return layout("Audit log", body, who, "/ui/audit")

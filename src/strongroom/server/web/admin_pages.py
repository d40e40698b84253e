"""The agents page and the vault settings page (with quotas and second-admin approvals)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from strongroom.server.catalog import Approval
from strongroom.server.web.overview import size
from strongroom.server.web.pages import csrf_field, e, layout, table, when
from strongroom.server.web.users import Session

ONLINE_S = 600.0
"""An agent that asked for work within this many seconds counts as online."""


def agents_page(
    who: Session, machines: list[dict[str, Any]], items: dict[str, list[str]], now: float
) -> str:
    def row(m: dict[str, Any]) -> str:
        seen = m.get("last_seen")
        online = isinstance(seen, int | float) and now - seen < ONLINE_S
        word = "online" if online else "never seen" if seen is None else "not seen lately"
        state = f'<span class="badge s-{"ok" if online else "overdue"}">{word}</span>'
        names = items.get(str(m["name"]), [])
        links = ", ".join(f'<a href="/ui/jobs?item={quote(n)}">{e(n)}</a>' for n in names)
        token = f"<td><code>{e(m['token'])}</code></td>" if who.role == "admin" else ""
        return (
            f'<tr data-agent="{e(m["name"])}"><th scope="row">{e(m["name"])}</th>'
            f"<td>{state}</td><td>{when(seen)}</td><td>{e(m.get('address'))}</td>"
            f"<td>{links or 'none'}</td><td>{when(m.get('created'))}</td>{token}</tr>"
        )

    heads = ["Machine", "State", "Last seen", "Address", "Items", "Registered"]
    if who.role == "admin":
        heads.append("Token")
    note = (
        '<p class="note">An agent is enrolled with <code>strongroom agent enrol</code> (an enrol '
        "or admin token); revoking its token on the Tokens page shuts it out.</p>"
    )
    body = table("Agents", heads, map(row, machines), "No agents enrolled yet.") + note
    return layout("Agents", body, who, "/ui/agents")


def vaults_page(
    who: Session,
    vaults: list[dict[str, Any]],
    approvals: list[Approval],
    notice: str = "",
) -> str:
    admin = who.role == "admin"

    def row(v: dict[str, Any]) -> str:
        quota = size(v["quota"]) if v["quota"] else "none"
        form = ""
        if admin:
            form = (
                f'<form method="post" action="/ui/vaults/{quote(v["name"])}/quota" class="inline">'
                f"{csrf_field(who)}"
                f'<label for="q-{e(v["name"])}" class="sr">Quota of {e(v["name"])}</label>'
                f'<input id="q-{e(v["name"])}" name="quota" size="7" placeholder="e.g. 500G">'
                f'<button type="submit">Set quota<span class="sr"> of {e(v["name"])}</span>'
                "</button></form>"
            )
        return (
            f'<tr data-vault="{e(v["name"])}"><th scope="row">{e(v["name"])}</th>'
            f'<td class="soft">{e(v["soft_delete_days"])}</td>'
            f'<td class="immutable">{e(v["immutable_days"])}</td>'
            f"<td>{quota}{form}</td></tr>"
        )

    heads = ("Vault", "Soft delete (days)", "Immutable (days)", "Quota")
    body = (
        (f'<p role="status" class="notice">{e(notice)}</p>' if notice else "")
        + table("Vault settings", heads, map(row, vaults), "No vaults yet.")
        + '<p class="note">The settings are signed with the vault\'s key, which the server never '
        "holds: they are changed below (an online agent backing up into the vault signs them) "
        "or with <code>strongroom settings --vault URL --soft-delete-days N --immutable-days N"
        "</code>. Raising either takes effect at once; lowering either, while another admin "
        "(an admin token or an admin user) exists, waits below until another admin approves it "
        "(nobody approves their own request, nor one made with a token they created). The quota "
        "is the capacity the overview's date of full is estimated against (without one, a vault "
        "in a local folder uses its file system's free space).</p>"
        + ("".join(_settings_form(who, str(v["name"])) for v in vaults) if admin else "")
        + _approvals(who, approvals)
    )
    return layout("Vault settings", body, who, "/ui/vaults")


def _settings_form(who: Session, name: str) -> str:
    fields = "".join(
        f'<label for="{key}-{e(name)}">{label} (days)</label>'
        f'<input id="{key}-{e(name)}" name="{key}" size="5" inputmode="numeric">'
        for key, label in (("soft_delete_days", "Soft delete"), ("immutable_days", "Immutable"))
    )
    return (
        f'<form method="post" action="/ui/vaults/{quote(name)}/settings" class="card" '
        f'data-settings="{e(name)}"><fieldset><legend>Change settings of {e(name)}</legend>'
        f"{csrf_field(who)}{fields}"
        f'<button type="submit">Change settings<span class="sr"> of {e(name)}</span></button>'
        "</fieldset></form>"
    )


def _approvals(who: Session, approvals: list[Approval]) -> str:
    def row(a: Approval) -> str:
        actions = ""
        if who.role == "admin" and a.state == "pending":
            actions = "".join(
                f'<form method="post" action="/ui/approvals/{e(a.id)}/{verb}" class="inline">'
                f'{csrf_field(who)}<button type="submit"{css}>{label}'
                f'<span class="sr"> request {e(a.id)}</span></button></form>'
                for verb, label, css in (
                    ("approve", "Approve", ""),
                    ("reject", "Reject", ' class="danger"'),
                )
            )
        state = {"pending": "queued", "approved": "succeeded", "rejected": "failed"}
        return (
            f'<tr data-approval="{e(a.id)}"><td><code>{e(a.id)}</code></td><td>{e(a.vault)}</td>'
            f"<td>{e(a.summary)}</td>"
            f'<td><span class="badge s-{state.get(a.state, "partial")}">{e(a.state)}</span></td>'
            f"<td>{actions}</td><td>{e(a.requested_by)}</td><td>{when(a.created)}</td>"
            f"<td>{e(a.decided_by)}</td></tr>"
        )

    heads = ("Request", "Vault", "Change", "State", "Decide", "Asked by", "Asked", "Decided by")
    newest = sorted(approvals, key=lambda a: (a.state != "pending", -a.created))
    return "<h2>Approval requests</h2>" + table(
        "Changes that lower a protection", heads, map(row, newest), "No requests."
    )

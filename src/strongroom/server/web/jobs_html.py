"""The dashboard's job pages: running jobs with live progress, the filtered history, one job
with its log and Cancel button.  ``static/live.js`` follows the ``data-sse`` streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from strongroom.records import dataclass
from strongroom.server.control.jobs import FINAL, KINDS
from strongroom.server.web.pages import (
    JOB_STATES,
    WRITERS,
    badge,
    csrf_field,
    e,
    layout,
    table,
    when,
)
from strongroom.server.web.users import Session


@dataclass(frozen=True, slots=True)
class Filters:
    item: str = ""
    state: str = ""
    kind: str = ""
    since: str = ""
    """A UTC day (YYYY-MM-DD): jobs created on it or later."""
    until: str = ""
    """A UTC day: jobs created on it or earlier."""

    def query(self, page: int) -> str:
        fields = {k: getattr(self, k) for k in self.__slots__ if getattr(self, k)}
        return urlencode({**fields, "page": page})


def percent_of(job: dict[str, Any]) -> float | None:
    """What the bar shows: the agent's last percent, 100 once the backup is done."""
    if job["state"] in ("succeeded", "partial"):
        return 100.0
    pct = job.get("percent")
    return min(max(float(pct), 0.0), 100.0) if isinstance(pct, int | float) else None


def progress(job: dict[str, Any]) -> str:
    pct = percent_of(job)
    if pct is None and job["state"] in FINAL:
        return '<span class="bar"><span class="pct">-</span></span>'
    value = "" if pct is None else f' value="{pct:.0f}"'
    text = "-" if pct is None else f"{pct:.0f} %"
    return (
        f'<span class="bar"><progress max="100"{value} aria-label="Progress of job {job["id"]}">'
        f'</progress> <span class="pct">{text}</span></span>'
    )


def _row(j: dict[str, Any]) -> str:
    return (
        f'<tr data-job="{j["id"]}"><td><a href="/ui/jobs/{j["id"]}">#{j["id"]}</a></td>'
        f"<td>{e(j['item'])}</td><td>{e(j['kind'])}</td>"
        f'<td class="state">{badge(str(j["state"]))}</td>'
        f"<td>{when(j.get('created'))}</td><td>{when(j.get('finished'))}</td>"
        f"<td>{progress(j)}</td><td>{e(j.get('reason') or '')}</td></tr>"
    )


HEADS = ("Job", "Item", "Kind", "State", "Created", "Finished", "Progress", "Reason")


def _choice(name: str, label: str, options: Sequence[str], chosen: str) -> str:
    opts = "".join(
        f'<option value="{e(o)}"{" selected" if o == chosen else ""}>{e(o or "any")}</option>'
        for o in ("", *options)
    )
    return (
        f'<div><label for="f-{name}">{label}</label>'
        f'<select id="f-{name}" name="{name}">{opts}</select></div>'
    )


def _day(name: str, label: str, value: str) -> str:
    return (
        f'<div><label for="f-{name}">{label}</label>'
        f'<input type="date" id="f-{name}" name="{name}" value="{e(value)}"></div>'
    )


def _pager(f: Filters, page: int, more: bool) -> str:
    links = []
    if page > 1:
        links.append(f'<a href="/ui/jobs?{e(f.query(page - 1))}" rel="prev">Newer jobs</a>')
    links.append(f"<span>Page {page}</span>")
    if more:
        links.append(f'<a href="/ui/jobs?{e(f.query(page + 1))}" rel="next">Older jobs</a>')
    return f'<nav class="pager" aria-label="Pages of the history">{" ".join(links)}</nav>'


def jobs_page(
    who: Session,
    running: list[dict[str, Any]],
    history: list[dict[str, Any]],
    items: list[str],
    f: Filters,
    page: int,
    more: bool,
) -> str:
    live = ' data-sse="/ui/events/jobs"' if running else ""
    now = (
        f'<h2>Running and queued</h2><div class="live"{live}>'
        + table("Running and queued jobs", HEADS, map(_row, running), "No job is running.")
        + "</div>"
    )
    filters = (
        '<h2>History</h2><form method="get" action="/ui/jobs" class="filters">'
        + _choice("item", "Item", items, f.item)
        + _choice("state", "State", JOB_STATES, f.state)
        + _choice("kind", "Kind", KINDS, f.kind)
        + _day("since", "Created from (UTC)", f.since)
        + _day("until", "Created until (UTC)", f.until)
        + '<button type="submit">Filter</button> <a href="/ui/jobs">Clear</a></form>'
    )
    body = (
        now
        + filters
        + table("Jobs, newest first", HEADS, map(_row, history), "No jobs match.")
        + _pager(f, page, more)
        + '<script src="/ui/static/live.js" defer></script>'
    )
    return layout("Jobs", body, who, "/ui/jobs")


def job_page(who: Session, job: dict[str, Any], log: list[dict[str, Any]]) -> str:
    facts = "".join(
        f'<dt>{e(k)}</dt><dd data-fact="{f}">{v}</dd>'
        for k, f, v in (
            ("Item", "item", e(job["item"])),
            ("Kind", "kind", e(job["kind"])),
            ("State", "state", badge(str(job["state"]))),
            ("Agent", "agent", e(job.get("agent"))),
            ("Created", "created", when(job.get("created"))),
            ("Started", "started", when(job.get("started"))),
            ("Finished", "finished", when(job.get("finished"))),
            ("Progress", "progress", progress(job)),
            ("Files", "files", e(job.get("files"))),
            ("Bytes read", "bytes_read", e(job.get("bytes_read"))),
            ("Bytes added", "bytes_added", e(job.get("bytes_added"))),
            ("Point", "point", e(job.get("point"))),
            ("Reason", "reason", e(job.get("reason"))),
        )
    )
    cancel = ""
    if who.role in WRITERS and job["state"] not in FINAL:
        cancel = (
            f'<form method="post" action="/ui/jobs/{job["id"]}/cancel" class="cancel">'
            f'{csrf_field(who)}<button type="submit" class="danger">Cancel job</button></form>'
        )
    lines = "".join(f"<li><time>{when(x['time'])}</time> {e(x['line'])}</li>" for x in log)
    live = "" if job["state"] in FINAL else f' data-sse="/ui/events/jobs/{job["id"]}"'
    body = (
        f'<dl class="facts"{live} data-lines="{len(log)}">{facts}</dl>{cancel}<h2>Log</h2>'
        f'<ol class="log" aria-live="polite">{lines or "<li>No log lines.</li>"}</ol>'
        '<script src="/ui/static/live.js" defer></script>'
    )
    return layout(f"Job #{job['id']}", body, who, "/ui/jobs")

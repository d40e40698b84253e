"""Prometheus metrics (text exposition format 0.0.4) of the control plane."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strongroom.server.control.plane import ControlPlane

HEALTH = ("ok", "warning", "failed", "overdue")
Rows = list[tuple[str, float]]


def _label(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _number(value: float) -> str:
    """Exact for integers (``:g`` would print 3.6e+06 for a byte count), else as repr."""
    return str(int(value)) if value.is_integer() else repr(value)


def render(plane: ControlPlane) -> str:
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, rows: Rows) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{name}{labels} {_number(value)}" for labels, value in rows)

    last_jobs = plane.last_backups()  # shared with the items' health: one query, not two
    items = plane.items_view(last_jobs)
    labels = {str(i["name"]): f"{{item={_label(i['name'])}" for i in items}
    metric(
        "strongroom_item_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the item's last successful backup.",
        [
            (labels[i["name"]] + "}", float(i["last_success"]))
            for i in items
            if i["last_success"] is not None
        ],
    )
    health = {h: f",health={_label(h)}}}" for h in HEALTH}
    metric(
        "strongroom_item_health",
        "gauge",
        "1 for the item's current health (ok, warning, failed, overdue).",
        [(labels[i["name"]] + health[h], float(i["health"] == h)) for i in items for h in HEALTH],
    )
    with plane.catalog.read() as db:  # one scan of the history for counts and sums
        by_state = db.execute(
            "SELECT kind, state, count(*), sum(CASE WHEN finished IS NOT NULL AND started IS NOT"
            " NULL THEN 1 ELSE 0 END), sum(CASE WHEN finished IS NOT NULL THEN finished - started"
            " END), sum(bytes_read), sum(bytes_added) FROM jobs GROUP BY kind, state"
        ).fetchall()
    states = [(k, s, n) for k, s, n, *_ in by_state]
    done = _sum_by_kind(by_state)
    last = [(i, d, r, a) for i, (_, d, r, a) in last_jobs.items() if d is not None]
    metric(
        "strongroom_jobs",
        "gauge",
        "Jobs in the history by kind and state.",
        [(f"{{kind={_label(k)},state={_label(s)}}}", float(n)) for k, s, n in states],
    )
    metric(
        "strongroom_job_duration_seconds_sum",
        "counter",
        "Total duration of finished jobs (in the kept history).",
        [(f"{{kind={_label(k)}}}", float(d or 0)) for k, _, d, _, _ in done],
    )
    metric(
        "strongroom_job_duration_seconds_count",
        "counter",
        "Finished jobs (kept history).",
        [(f"{{kind={_label(k)}}}", float(n)) for k, n, _, _, _ in done],
    )
    metric(
        "strongroom_job_bytes_read_total",
        "counter",
        "Bytes read by finished jobs.",
        [(f"{{kind={_label(k)}}}", float(r or 0)) for k, _, _, r, _ in done],
    )
    metric(
        "strongroom_job_bytes_added_total",
        "counter",
        "Bytes added to vaults by jobs.",
        [(f"{{kind={_label(k)}}}", float(a or 0)) for k, _, _, _, a in done],
    )
    metric(
        "strongroom_item_last_job_duration_seconds",
        "gauge",
        "Duration of the item's last finished backup job.",
        [(f"{{item={_label(i)}}}", float(d or 0)) for i, d, _, _ in last],
    )
    metric(
        "strongroom_item_last_job_bytes_added",
        "gauge",
        "Bytes the item's last finished backup job added.",
        [(f"{{item={_label(i)}}}", float(a or 0)) for i, _, _, a in last],
    )
    _vault_metrics(plane, metric)
    return "\n".join(out) + "\n"


def _sum_by_kind(rows: list[tuple[object, ...]]) -> list[tuple[str, int, float, int, int]]:
    """Finished jobs per kind: count, durations, bytes read and added (from per-state sums)."""
    sums: dict[str, list[float]] = {}
    for kind, state, _, finished, duration, read, added in rows:
        if state in ("queued", "running") or not finished:
            continue
        acc = sums.setdefault(str(kind), [0, 0.0, 0, 0])
        for n, value in enumerate((finished, duration, read, added)):
            acc[n] += float(value or 0)  # type: ignore[arg-type]
    return [(k, int(c), d, int(r), int(a)) for k, (c, d, r, a) in sorted(sums.items())]


def _vault_metrics(plane: ControlPlane, metric: Callable[[str, str, str, Rows], None]) -> None:
    from strongroom.server.control.usage import usages

    found = usages(plane.catalog, plane.registry)
    metric(
        "strongroom_vault_stored_bytes",
        "gauge",
        "Bytes of the vault's packs, index objects and points (a listing, cached 5 min).",
        [(f"{{vault={_label(u.vault)}}}", float(u.stored)) for u in found],
    )
    metric(
        "strongroom_vault_objects",
        "gauge",
        "The vault's packs, index objects and points.",
        [(f"{{vault={_label(u.vault)}}}", float(u.objects)) for u in found],
    )
    metric(
        "strongroom_vault_logical_bytes",
        "gauge",
        "Logical bytes of the vault's live points that control-plane jobs made.",
        [(f"{{vault={_label(u.vault)}}}", float(u.logical)) for u in found],
    )
    metric(
        "strongroom_vault_dedup_ratio",
        "gauge",
        "Logical bytes of the live points over the bytes stored.",
        [(f"{{vault={_label(u.vault)}}}", u.ratio) for u in found if u.ratio is not None],
    )

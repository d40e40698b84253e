"""The overview's vault sections: usage over time with the estimated date of full, the data
reduction backups achieved, and each vault's last verify."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from strongroom.server.catalog import Catalog
from strongroom.server.web import charts, usage
from strongroom.server.web.pages import e, table, when
from strongroom.server.web.usage import Sample

CHART_POINTS = 60
"""At most this many samples are drawn (and listed): the newest of each period."""


@dataclass(frozen=True, slots=True)
class VaultView:
    name: str
    samples: list[Sample]
    full_at: float | None
    read: int
    """Bytes the vault's backups read (their original size), over the job history."""
    added: int
    """Bytes they added to the storage (new data, after dedup and compression)."""
    verified: tuple[float | None, str] | None
    """The newest verify job's finish time and state, None if the vault was never verified."""


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def thin(points: list[Sample], most: int = CHART_POINTS) -> list[Sample]:
    """At most ``most`` samples, evenly spaced over the list, always keeping the newest."""
    if len(points) <= most:
        return points
    step = len(points) / most
    picked = [points[int(i * step)] for i in range(most - 1)]
    return [*picked, points[-1]]


def views(catalog: Catalog) -> list[VaultView]:
    return [_view(catalog, name) for name, _ in catalog.vaults()]


def _view(catalog: Catalog, vault: str) -> VaultView:
    found = usage.samples(catalog, vault)
    with catalog.read() as db:
        read, added = db.execute(
            "SELECT coalesce(sum(j.bytes_read), 0), coalesce(sum(j.bytes_added), 0) FROM jobs j"
            " JOIN items i ON i.name = j.item JOIN policies p ON p.name = i.policy"
            " WHERE p.vault = ? AND j.kind = 'backup' AND j.state IN ('succeeded', 'partial')",
            (vault,),
        ).fetchone()
        # verify jobs (scheduled verification) of an item stored in this vault
        verify = db.execute(
            "SELECT j.finished, j.state FROM jobs j JOIN items i ON i.name = j.item"
            " JOIN policies p ON p.name = i.policy WHERE p.vault = ? AND j.kind = 'verify'"
            " AND j.finished IS NOT NULL ORDER BY j.finished DESC LIMIT 1",
            (vault,),
        ).fetchone()
    return VaultView(
        vault,
        found,
        usage.full_at(found),
        int(read),
        int(added),
        (float(verify[0]), str(verify[1])) if verify else None,
    )


def sections(vaults: list[VaultView]) -> str:
    if not vaults:
        return "<h2>Vaults</h2><p>No vaults yet.</p>"
    return (
        "<h2>Vaults</h2>" + _cards(vaults) + _summary(vaults) + "".join(_usage(v) for v in vaults)
    )


def _cards(vaults: list[VaultView]) -> str:
    """Each vault's fill level and date of full at a glance (the table has the rest)."""

    def card(v: VaultView) -> str:
        last = v.samples[-1] if v.samples else None
        pct = f"{100 * last.used / last.capacity:.0f} %" if last and last.capacity else "-"
        full = when(v.full_at)[:10] if v.full_at is not None else _full(v)
        return (
            f'<div class="stat vault-card"><span class="n">{pct}</span> <span>{e(v.name)} '
            f"used; full: {e(full)}</span></div>"
        )

    cards = "".join(map(card, vaults))
    return f'<section aria-label="Vault fill levels" class="stats">{cards}</section>'


def _reduction(v: VaultView) -> str:
    return f"{v.read / v.added:.1f}x" if v.added else "-"


def _full(v: VaultView) -> str:
    last = v.samples[-1] if v.samples else None
    if last is None:
        return "not measured yet"
    if last.capacity is None:
        return "unknown (no capacity: set a quota)"
    if v.full_at is None:
        return "not growing" if len(v.samples) > 1 else "needs two samples"
    return when(v.full_at)


def _verify(v: VaultView) -> str:
    if v.verified is None:
        return "never verified"
    finished, state = v.verified
    return f'{when(finished)} <span class="badge s-{e(state)}">{e(state)}</span>'


def _summary(vaults: list[VaultView]) -> str:
    def row(v: VaultView) -> str:
        last = v.samples[-1] if v.samples else None
        used = size(last.used) if last else "-"
        cap = size(last.capacity) if last and last.capacity is not None else "-"
        pct = f"{100 * last.used / last.capacity:.1f} %" if last and last.capacity else "-"
        return (
            f'<tr data-vault="{e(v.name)}"><th scope="row">{e(v.name)}</th><td>{used}</td>'
            f'<td>{cap}</td><td>{pct}</td><td class="full">{e(_full(v))}</td>'
            f'<td class="reduction">{_reduction(v)}</td><td>{size(v.read)}</td>'
            f'<td>{size(v.added)}</td><td class="verify">{_verify(v)}</td></tr>'
        )

    heads = ["Vault", "Used", "Capacity", "Used %", "Estimated full", "Data reduction"]
    heads += ["Backups read", "Backups stored", "Last verify"]
    note = (
        '<p class="note">Data reduction: what backups read over what they added to the '
        "storage (deduplication and compression together; the server holds no key, so it "
        "cannot tell them apart: <code>strongroom stats</code> shows each). Estimated full: "
        "a least-squares line through the usage samples, as Proxmox Backup Server draws it.</p>"
    )
    return table("Vault usage, data reduction and verify state", heads, map(row, vaults), "") + note


def _usage(v: VaultView) -> str:
    shown = thin(v.samples)
    if not shown:
        return ""
    used = charts.Series("Used", "c-used", [(s.taken, float(s.used)) for s in shown])
    series = [used]
    caps = [(s.taken, float(s.capacity)) for s in shown if s.capacity is not None]
    if caps:
        series.append(charts.Series("Capacity", "c-cap", caps))
    chart = charts.line_chart(f"Usage of vault {v.name} over time", series, _day, size)

    def row(s: Sample) -> str:
        cap = "-" if s.capacity is None else size(s.capacity)
        return f"<tr><td>{when(s.taken)}</td><td>{size(s.used)}</td><td>{cap}</td></tr>"

    data = table(
        f"Usage samples of vault {v.name}",
        ("Time", "Used", "Capacity"),
        map(row, reversed(shown)),
        "No samples.",
    )
    return (
        f'<section class="vault" aria-labelledby="u-{e(v.name)}">'
        f'<h3 id="u-{e(v.name)}">Vault {e(v.name)}: usage over time</h3>'
        f"{chart}<details><summary>Usage as a table</summary>{data}</details></section>"
    )

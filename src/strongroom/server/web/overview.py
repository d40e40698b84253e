"""The overview's vault sections: usage over time with the estimated date of full, the
deduplication and compression factors (or their product), and each vault's verify state."""

from __future__ import annotations

from datetime import UTC, datetime

from strongroom.records import dataclass
from strongroom.server.catalog import Catalog
from strongroom.server.control import usage as sizes
from strongroom.server.vaults import VaultRegistry
from strongroom.server.web import charts, usage, verifystate
from strongroom.server.web.pages import e, table, when
from strongroom.server.web.reduction import Factors, factors
from strongroom.server.web.usage import Sample
from strongroom.server.web.verifystate import Coverage

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
    coverage: Coverage
    """The vault's verify records (``verifystate``: the same rule as the points table)."""
    counts: dict[str, int]
    """How many of its points are verified, pending or damaged."""
    factors: Factors


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


def views(catalog: Catalog, registry: VaultRegistry) -> list[VaultView]:
    stored = {u.vault: u.stored for u in sizes.usages(catalog, registry)}
    return [_view(catalog, registry, name, stored.get(name)) for name, _ in catalog.vaults()]


def _view(catalog: Catalog, registry: VaultRegistry, vault: str, stored: int | None) -> VaultView:
    found = usage.samples(catalog, vault)
    with catalog.read() as db:
        read, added = db.execute(
            "SELECT coalesce(sum(j.bytes_read), 0), coalesce(sum(j.bytes_added), 0) FROM jobs j"
            " JOIN items i ON i.name = j.item JOIN policies p ON p.name = i.policy"
            " WHERE p.vault = ? AND j.kind = 'backup' AND j.state IN ('succeeded', 'partial')",
            (vault,),
        ).fetchone()
    cover, counts = verifystate.vault_state(catalog, vault)
    return VaultView(
        vault,
        found,
        usage.full_at(found),
        int(read),
        int(added),
        cover,
        counts,
        factors(catalog, registry, vault, stored),
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
    f = v.factors
    if f.dedup is not None and f.compression is not None:
        return f"{f.dedup * f.compression:.1f}x"
    return f"{v.read / v.added:.1f}x" if v.added else "-"


def _factor(n: float | None, why: str) -> str:
    if n is None:
        return f'<span title="{e(why)}">-</span>'
    return f'<span data-value="{n:.4f}">{n:.2f}x</span>'


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
    """Damage, else how many points are verified (points table rule), else never verified."""
    c, n = v.coverage, v.counts
    if c.damaged:
        return verifystate.cell(c.of("", 0.0))  # damage is vault-wide: any point shows it
    if c.listed is None:
        return "never verified"
    return (
        f"{n[verifystate.VERIFIED]} point(s) verified, {n[verifystate.PENDING]} pending;"
        f" last run {e(when(c.listed))}"
    )


def _summary(vaults: list[VaultView]) -> str:
    def row(v: VaultView) -> str:
        last = v.samples[-1] if v.samples else None
        used = size(last.used) if last else "-"
        cap = size(last.capacity) if last and last.capacity is not None else "-"
        pct = f"{100 * last.used / last.capacity:.1f} %" if last and last.capacity else "-"
        return (
            f'<tr data-vault="{e(v.name)}"><th scope="row">{e(v.name)}</th><td>{used}</td>'
            f'<td>{cap}</td><td>{pct}</td><td class="full">{e(_full(v))}</td>'
            f'<td class="dedup">{_factor(v.factors.dedup, v.factors.why)}</td>'
            f'<td class="compression">{_factor(v.factors.compression, v.factors.why)}</td>'
            f'<td class="reduction">{_reduction(v)}</td><td>{size(v.read)}</td>'
            f'<td>{size(v.added)}</td><td class="verify">{_verify(v)}</td></tr>'
        )

    heads = ["Vault", "Used", "Capacity", "Used %", "Estimated full", "Dedup", "Compression"]
    heads += ["Data reduction", "Backups read", "Backups stored", "Verify state"]
    without = "".join(
        f"<li>{e(v.name)}: only the product ({e(v.factors.why)})</li>"
        for v in vaults
        if v.factors.dedup is None
    )
    note = (
        '<p class="note">Dedup: the live points\' logical bytes over the unique raw bytes '
        "stored; compression: those raw bytes over the stored bytes, as the clients' chunk "
        "writers counted them (docs/server.md). Data reduction: their product, or, where the "
        "factors are not known, what backups read over what they added. Estimated full: "
        "a least-squares line through the usage samples, as Proxmox Backup Server draws it. "
        "Verify state: a point is verified when every object it can use was re-hashed clean "
        "after it was written.</p>" + (f'<ul class="note">{without}</ul>' if without else "")
    )
    caption = "Vault usage, dedup and compression, verify state"
    return table(caption, heads, map(row, vaults), "") + note


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

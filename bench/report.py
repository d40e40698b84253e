"""The results: medians per operation and tool, strongroom's ratios, issue 19's targets.

``render_markdown`` gives the tables printed at the end of a run (and pasted into the
README): every operation of every data set with the machine's state during it, which targets
each strongroom row meets (rules in ``scoring``), the targets summed up over all data sets,
the 1 -> 2 core scaling, and the machine's state per run.  ``to_json`` keeps every sample.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ceiling import describe as describe_ceiling
from machine import busy_cores
from measure import Sample, median_sample
from scoring import Check, Numbers, parse_op, row_checks, speedup, speedup_check

MiB = 1 << 20
SUBJECT = "strongroom"
REFERENCE = "restic"


@dataclass(frozen=True)
class Measurement:
    """One timed command: which operation, which tool, which run, and what it cost."""

    op: str
    tool: str
    run: int
    sample: Sample
    repo_size: int | None = None  # repository bytes after a backup
    extra: dict[str, float | int | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """The median over runs of one operation by one tool."""

    op: str
    tool: str
    runs: int
    clean: int  # runs without noise from other jobs (the median is over these if any)
    sample: Sample
    repo_size: int | None
    extra: dict[str, float | int | bool]


def summarize(measurements: Sequence[Measurement]) -> dict[tuple[str, str], Summary]:
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.op, m.tool), []).append(m)
    return {key: _summary(group) for key, group in groups.items()}


def _summary(everything: Sequence[Measurement]) -> Summary:
    clean = [m for m in everything if not m.extra.get("noisy")]
    group = clean or everything
    sizes = [m.repo_size for m in group if m.repo_size is not None]
    extra: dict[str, float | int | bool] = {}
    for key in sorted({k for m in group for k in m.extra} - {"noisy"}):
        values = [m.extra[key] for m in group if key in m.extra]
        if all(isinstance(v, bool) for v in values):
            extra[key] = all(values)
        else:
            extra[key] = statistics.median(values)
    return Summary(
        op=group[0].op,
        tool=group[0].tool,
        runs=len(everything),
        clean=len(clean),
        sample=median_sample([m.sample for m in group]),
        repo_size=int(statistics.median(sizes)) if sizes else None,
        extra=extra,
    )


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _ordered_ops(summaries: dict[tuple[str, str], Summary]) -> list[str]:
    seen: dict[str, None] = {}
    for op, _tool in summaries:
        seen.setdefault(op, None)
    return list(seen)


def numbers(s: Summary) -> Numbers:
    return Numbers(s.sample.wall, s.sample.cpu, s.sample.max_rss, s.repo_size)


def checks_of(summaries: dict[tuple[str, str], Summary], op: str) -> list[Check]:
    mine, ref = summaries.get((op, SUBJECT)), summaries.get((op, REFERENCE))
    if mine is None or ref is None:
        return []
    return row_checks(op, numbers(mine), numbers(ref))


def main_table(summaries: dict[tuple[str, str], Summary], tools: Sequence[str]) -> list[str]:
    lines = [
        "| operation | tool | wall s | CPU s | cores used | peak RSS (PSS) MiB | vault MiB "
        "| strongroom ÷ tool: wall / CPU / RSS / PSS / vault | targets (vs restic) "
        "| load / steal % / iowait % | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for op in _ordered_ops(summaries):
        mine = summaries.get((op, SUBJECT))
        for tool in tools:
            s = summaries.get((op, tool))
            if s is None:
                continue
            ratios = "" if tool == SUBJECT or mine is None else _ratios(mine, s)
            size = "" if s.repo_size is None else f"{s.repo_size / MiB:,.0f}"
            checks = (
                "; ".join(c.text() for c in checks_of(summaries, op)) if tool == SUBJECT else ""
            )
            x = s.sample
            lines.append(
                f"| {op} | {tool} | {x.wall:.2f} | {x.cpu:.2f} | {x.cores:.2f} "
                f"| {_memory(x)} | {size} | {ratios} | {checks} "
                f"| {x.load1:.1f} / {x.steal_pct:.1f} / {x.iowait_pct:.1f} | {_notes(s)} |"
            )
    return lines


def _ratios(mine: Summary, other: Summary) -> str:
    parts = [
        _ratio(mine.sample.wall, other.sample.wall),
        _ratio(mine.sample.cpu, other.sample.cpu),
        _ratio(mine.sample.max_rss, other.sample.max_rss),
    ]
    shown = [_fmt_ratio(p) for p in parts if p is not None]
    pss = _ratio(mine.sample.max_pss or None, other.sample.max_pss or None)
    shown.append(_fmt_ratio(pss))  # in its place ("-") even when not sampled
    vault = _ratio(mine.repo_size, other.repo_size)
    if vault is not None:
        shown.append(_fmt_ratio(vault))
    return " / ".join(shown)


def _memory(x: Sample) -> str:
    """Peak RSS and, when it was sampled, peak PSS (measure._TreeMemory says why both)."""
    pss = f" ({x.max_pss / MiB:,.0f})" if x.max_pss else ""
    return f"{x.max_rss / MiB:,.0f}{pss}"


def _notes(s: Summary) -> str:
    notes: list[str] = []
    if s.clean < s.runs:
        notes.append(f"{s.runs - s.clean} of {s.runs} runs noisy" + ("" if s.clean else " (all)"))
    if "verified" in s.extra:
        notes.append("verified" if s.extra["verified"] else "**VERIFY FAILED**")
    if "allocated" in s.extra:
        notes.append(f"output allocated {float(s.extra['allocated']) / MiB:,.0f} MiB")
    if "sync" in s.extra:
        notes.append(f"incl. sync {float(s.extra['sync']):.2f} s")
    if s.extra.get("reserve"):
        notes.append(f"vault excl. its {float(s.extra['reserve']) / MiB:,.0f} MiB .reserve")
    if "bytes_read" in s.extra:
        notes.append(f"read {float(s.extra['bytes_read']) / MiB:,.0f} MiB")
    if "scrypt_p" in s.extra:  # restic's key cost, chosen at init (tools.Restic.key_params)
        n, r, p = (float(s.extra[f"scrypt_{k}"]) for k in ("n", "r", "p"))
        notes.append(f"key: scrypt N={n:g} r={r:g} p={p:g}")
    return ", ".join(notes)


def target_summary(summaries: dict[tuple[str, str], Summary]) -> list[str]:
    """Each target over every data set: how many rows meet it and the worst ratio."""
    rows: dict[str, list[tuple[str, Check]]] = {}
    for op in _ordered_ops(summaries):
        name = parse_op(op)
        for check in checks_of(summaries, op):
            key = f"{_family(name.what)}: {check.name}"
            rows.setdefault(key, []).append((op, check))
    rows.update(_speedup_rows(summaries))
    lines = [
        "| target | goal | rows met | worst (operation) | verdict |",
        "|---|---|---:|---|---|",
    ]
    for key, checks in rows.items():
        worst_op, worst = min(checks, key=lambda oc: _margin(oc[1]))
        met = sum(c.met for _, c in checks)
        sign = ">=" if worst.at_least else "<="
        verdict = "met" if met == len(checks) else "**missed**"
        lines.append(
            f"| {key} | {sign} {worst.limit:g}x | {met} of {len(checks)} "
            f"| {worst.ratio:.2f}x ({worst_op}) | {verdict} |"
        )
    return lines


def _family(what: str) -> str:
    return what.split(",", maxsplit=1)[0]


def _margin(c: Check) -> float:
    """How comfortably a check is met (negative: missed); the smallest is the worst."""
    return c.ratio - c.limit if c.at_least else c.limit - c.ratio


def _speedup_rows(summaries: dict[tuple[str, str], Summary]) -> dict[str, list[tuple[str, Check]]]:
    rows: dict[str, list[tuple[str, Check]]] = {}
    for base, one, two in _core_pairs(summaries, SUBJECT):
        check = speedup_check(base, one.sample.wall, two.sample.wall)
        if check is not None:
            key = f"{_family(parse_op(base).what)}: speedup 1 -> 2 cores"
            rows.setdefault(key, []).append((base, check))
    return rows


def _core_pairs(
    summaries: dict[tuple[str, str], Summary], tool: str
) -> list[tuple[str, Summary, Summary]]:
    """(operation without cores, 1-core summary, 2-core summary) of ``tool``."""
    pairs: list[tuple[str, Summary, Summary]] = []
    for op in _ordered_ops(summaries):
        name = parse_op(op)
        if name.cores != 1:
            continue
        base = f"{name.dataset}: {name.what}"
        two = summaries.get((f"{base} [2 cores]", tool))
        one = summaries.get((op, tool))
        if one is not None and two is not None:
            pairs.append((base, one, two))
    return pairs


def scaling_table(
    summaries: dict[tuple[str, str], Summary], tools: Sequence[str], cpus: int
) -> list[str]:
    """``cpus``: the measured machine's, for its busy cores."""
    lines = [
        "| operation | tool | wall 1 core s | wall 2 cores s | speedup | CPU 1 / 2 cores s "
        "| machine busy cores 1 / 2 | target |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for tool in tools:
        for base, one, two in _core_pairs(summaries, tool):
            check = speedup_check(base, one.sample.wall, two.sample.wall)
            target = check.text() if check is not None and tool == SUBJECT else ""
            lines.append(
                f"| {base} | {tool} | {one.sample.wall:.2f} | {two.sample.wall:.2f} "
                f"| {speedup(one.sample.wall, two.sample.wall):.2f}x "
                f"| {one.sample.cpu:.2f} / {two.sample.cpu:.2f} "
                f"| {_busy(one.sample, cpus)} / {_busy(two.sample, cpus)} | {target} |"
            )
    return lines if len(lines) > 2 else []


def _busy(sample: Sample, cpus: int) -> str:
    """The machine's cores at work during a command, the kernel's threads included (results
    from before session 23 did not record it: "-")."""
    return f"{busy_cores(sample.busy_pct, cpus):.2f}" if sample.busy_pct else "-"


def machine_table(measurements: Sequence[Measurement]) -> list[str]:
    """The machine's state per data set and run: median and worst over its commands."""
    groups: dict[tuple[str, int], list[Sample]] = {}
    for m in measurements:
        groups.setdefault((m.op.split(":")[0], m.run), []).append(m.sample)
    lines = [
        "| data set | run | commands | load (median / max) | steal % (median / max) "
        "| iowait % (median / max) | other processes' CPU s (sum) |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    for (ds, run), samples in groups.items():

        def mm(values: list[float]) -> str:
            return f"{statistics.median(values):.1f} / {max(values):.1f}"

        lines.append(
            f"| {ds} | {run + 1} | {len(samples)} | {mm([s.load1 for s in samples])} "
            f"| {mm([s.steal_pct for s in samples])} | {mm([s.iowait_pct for s in samples])} "
            f"| {sum(s.foreign_cpu for s in samples):.1f} |"
        )
    return lines


def render_markdown(
    measurements: Sequence[Measurement],
    tools: Sequence[str],
    header: Sequence[str],
    facts: dict[str, int],
    cpus: int,
    cap: dict[str, float] | None = None,
) -> str:
    """``cap``: the machine's own 1 -> 2 core ceiling (``ceiling.summarize``), when measured."""
    summaries = summarize(measurements)
    lines = [*header, "", *main_table(summaries, tools), ""]
    lines += ["Targets of issue 19 over all data sets (ratios to restic in the same run):", ""]
    lines += [*target_summary(summaries), ""]
    scaling = scaling_table(summaries, tools, cpus)
    if scaling:
        lines += [
            "Scaling (`taskset -c 0` vs `taskset -c 0,1`). Machine busy cores: all CPU time at "
            "work during the command, the kernel's threads included (writeback, the journal, "
            "the loop device under the restore file system), which `taskset` does not pin: "
            "a command pinned to one core that keeps the machine more than one core busy "
            "borrows the other.",
            "",
            *scaling,
            "",
        ]
        if cap:
            lines += [describe_ceiling(cap), ""]
    lines += ["Machine state per run (during the timed commands):", ""]
    lines += machine_table(measurements)
    return "\n".join(lines) + "\n"


def measurements_from_json(doc: dict[str, object]) -> list[Measurement]:
    """The measurements saved by :func:`to_json`."""
    samples = doc["samples"]
    assert isinstance(samples, list)
    return [
        Measurement(
            op=m["op"],
            tool=m["tool"],
            run=m["run"],
            sample=Sample(**m["sample"]),
            repo_size=m["repo_size"],
            extra=m["extra"],
        )
        for m in samples
    ]


def to_json(
    measurements: Sequence[Measurement],
    machine: dict[str, str],
    facts: dict[str, int],
    settings: dict[str, object],
) -> dict[str, object]:
    summaries = summarize(measurements)
    return {
        "machine": machine,
        "settings": settings,
        "facts": facts,
        "samples": [asdict(m) for m in measurements],
        "medians": [asdict(s) for s in summaries.values()],
        "targets": {
            op: [asdict(c) | {"met": c.met} for c in checks_of(summaries, op)]
            for op in _ordered_ops(summaries)
        },
    }

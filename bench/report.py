"""The results: medians per operation and tool, strongroom's ratios, the issue's targets.

``render_markdown`` gives the table printed at the end of a run (and pasted into the
README); ``to_json`` keeps every sample for later analysis.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

from measure import Sample, median_sample

MiB = 1 << 20
SUBJECT = "strongroom"
REFERENCE = "restic"

# operation -> strongroom's wall time / restic's, at most
WALL_TARGETS = {
    "image: first backup": 0.35,
    "image: unchanged, full re-read": 0.25,
    "tree: first backup": 0.5,
    "tree: unchanged": 0.5,
    "image: restore": 0.5,
    "tree: restore": 0.7,
}
SIZE_TARGET = 1.05
SPARSE_SLACK = 1.5  # sparse backup within 1.5x of the time its data alone predicts


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


@dataclass(frozen=True)
class TargetResult:
    name: str
    measured: str
    goal: str
    met: bool | None  # None: not measured in this run


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


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _ordered_ops(summaries: dict[tuple[str, str], Summary]) -> list[str]:
    seen: dict[str, None] = {}
    for op, _tool in summaries:
        seen.setdefault(op, None)
    return list(seen)


def main_table(summaries: dict[tuple[str, str], Summary], tools: Sequence[str]) -> list[str]:
    lines = [
        "| operation | tool | wall s | CPU s | peak RSS MiB | repo MiB "
        "| strongroom ÷ tool: wall / CPU / RSS / repo | notes |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for op in _ordered_ops(summaries):
        mine = summaries.get((op, SUBJECT))
        for tool in tools:
            s = summaries.get((op, tool))
            if s is None:
                continue
            ratios = "" if tool == SUBJECT or mine is None else _ratios(mine, s)
            size = "" if s.repo_size is None else f"{s.repo_size / MiB:,.0f}"
            lines.append(
                f"| {op} | {tool} | {s.sample.wall:.2f} | {s.sample.cpu:.2f} "
                f"| {s.sample.max_rss / MiB:,.0f} | {size} | {ratios} | {_notes(s)} |"
            )
    return lines


def _ratios(mine: Summary, other: Summary) -> str:
    parts = [
        _ratio(mine.sample.wall, other.sample.wall),
        _ratio(mine.sample.cpu, other.sample.cpu),
        _ratio(mine.sample.max_rss, other.sample.max_rss),
        _ratio(mine.repo_size, other.repo_size),
    ]
    return " / ".join(_fmt_ratio(p) for p in parts if p is not None)


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
    if "bytes_read" in s.extra:
        notes.append(f"read {float(s.extra['bytes_read']) / MiB:,.0f} MiB")
    return ", ".join(notes)


def evaluate_targets(
    summaries: dict[tuple[str, str], Summary], facts: dict[str, int]
) -> list[TargetResult]:
    results = [_wall_target(summaries, op, goal) for op, goal in WALL_TARGETS.items()]
    results.append(_sparse_target(summaries, facts))
    results.append(
        _per_op_target(
            summaries,
            "peak RSS <= restic's, every operation",
            lambda s: s.sample.max_rss,
            limit=1.0,
        )
    )
    results.append(
        _per_op_target(
            summaries,
            "repository size <= 1.05x restic's after each backup",
            lambda s: s.repo_size,
            limit=SIZE_TARGET,
        )
    )
    return results


def _wall_target(summaries: dict[tuple[str, str], Summary], op: str, goal: float) -> TargetResult:
    mine, ref = summaries.get((op, SUBJECT)), summaries.get((op, REFERENCE))
    name = f"{op}: wall vs restic"
    if mine is None or ref is None:
        return TargetResult(name, "not run", f"<= {goal}x", None)
    ratio = mine.sample.wall / ref.sample.wall
    measured = f"{ratio:.2f}x ({mine.sample.wall:.2f} s vs {ref.sample.wall:.2f} s)"
    return TargetResult(name, measured, f"<= {goal}x", ratio <= goal)


def _sparse_target(
    summaries: dict[tuple[str, str], Summary], facts: dict[str, int]
) -> TargetResult:
    """Proportional to the data: no slower per data byte than the 2 GiB image's first backup.

    The image holds about as much data (plus as much in zero blocks, which are read too), so
    a backup that read the holes would take (virtual size / data) times longer than that.
    """
    name = "sparse image, first backup: time proportional to its data"
    goal = f"wall <= {SPARSE_SLACK}x the image first backup's time per data byte"
    sparse = summaries.get(("sparse: first backup", SUBJECT))
    image = summaries.get(("image: first backup", SUBJECT))
    if sparse is None or image is None:
        return TargetResult(name, "not run (needs the image and sparse data sets)", goal, None)
    data = facts["sparse_data_bytes"]
    predicted = image.sample.wall * data / facts["image_data_bytes"]
    parts = [
        f"{sparse.sample.wall:.2f} s = {sparse.sample.wall / predicted:.2f}x the data's time",
        f"read {float(sparse.extra.get('bytes_read', 0)) / MiB:,.0f} MiB "
        f"for {data / MiB:,.0f} MiB of data in {facts['sparse_bytes'] / MiB:,.0f} MiB",
    ]
    ref = summaries.get(("sparse: first backup", REFERENCE))
    if ref is not None:
        parts.append(f"restic {ref.sample.wall:.1f} s")
    return TargetResult(
        name, "; ".join(parts), goal, sparse.sample.wall <= SPARSE_SLACK * predicted
    )


def _per_op_target(
    summaries: dict[tuple[str, str], Summary],
    name: str,
    value: Callable[[Summary], int | None],
    limit: float,
) -> TargetResult:
    ratios: dict[str, float] = {}
    for op in _ordered_ops(summaries):
        mine, ref = summaries.get((op, SUBJECT)), summaries.get((op, REFERENCE))
        if mine is None or ref is None:
            continue
        r = _ratio(value(mine), value(ref))
        if r is not None:
            ratios[op] = r
    if not ratios:
        return TargetResult(name, "not run", f"<= {limit}x", None)
    missed = {op: r for op, r in ratios.items() if r > limit}
    worst = max(ratios, key=lambda op: ratios[op])
    measured = f"worst {ratios[worst]:.2f}x ({worst})"
    if missed:
        measured += "; over: " + ", ".join(f"{op} {r:.2f}x" for op, r in missed.items())
    return TargetResult(name, measured, f"<= {limit}x", not missed)


def targets_table(results: Iterable[TargetResult]) -> list[str]:
    lines = ["| target | measured | goal | |", "|---|---|---|---|"]
    for t in results:
        verdict = "not run" if t.met is None else ("met" if t.met else "**missed**")
        lines.append(f"| {t.name} | {t.measured} | {t.goal} | {verdict} |")
    return lines


def render_markdown(
    measurements: Sequence[Measurement],
    tools: Sequence[str],
    header: Sequence[str],
    facts: dict[str, int],
) -> str:
    summaries = summarize(measurements)
    lines = [*header, "", *main_table(summaries, tools), ""]
    lines += ["Targets (ratios to restic in the same run):", ""]
    lines += targets_table(evaluate_targets(summaries, facts))
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
        "targets": [asdict(t) for t in evaluate_targets(summaries, facts)],
    }

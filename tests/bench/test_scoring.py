"""bench/scoring.py and bench/report.py: issue 19's targets, ratio and scaling tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bench.scoring import (
    Check,
    Numbers,
    category,
    op_name,
    parse_op,
    row_checks,
    speedup_check,
    vm_checks,
)

from tests.bench._harness import bench_module


def test_op_names_round_trip() -> None:
    assert op_name("usr", "first backup") == "usr: first backup"
    assert op_name("usr", "restore", 1) == "usr: restore [1 core]"
    name = parse_op("text-mid: unchanged, full re-read [2 cores]")
    assert (name.dataset, name.what, name.cores) == ("text-mid", "unchanged, full re-read", 2)
    assert parse_op("tree: after 1 % change").cores is None
    with pytest.raises(ValueError, match="not an operation"):
        parse_op("nonsense")


def test_categories() -> None:
    assert category("first backup") == "first"
    assert category("unchanged, full re-read") == "unchanged"
    assert category("after 1 % change") == "changed"
    assert category("restore") == "restore"
    assert category("something else") is None


def _by_name(checks: list[Check]) -> dict[str, tuple[float, bool]]:
    return {c.name: (round(c.ratio, 3), c.met) for c in checks}


def test_first_backup_needs_half_the_wall_and_cpu() -> None:
    mine = Numbers(wall=4.0, cpu=6.0, rss=100, vault=1030)
    restic = Numbers(wall=10.0, cpu=10.0, rss=100, vault=1000)
    got = _by_name(row_checks("big: first backup", mine, restic))
    assert got == {
        "wall": (0.4, True),
        "CPU": (0.6, False),
        "RSS": (1.0, True),
        "vault": (1.03, True),
    }


def test_restore_limit_and_no_cpu_target() -> None:
    got = _by_name(row_checks("tree: restore", Numbers(6.5, 50, 90), Numbers(10, 10, 100)))
    assert got == {"wall": (0.65, False), "RSS": (0.9, True)}


def test_small_tree_must_not_be_slower_than_restic() -> None:
    got = _by_name(row_checks("etc: unchanged", Numbers(1.41, 1, 1), Numbers(1.09, 1, 1)))
    assert got["small tree wall"] == (1.294, False)
    assert got["wall"][1] is False


def test_vault_over_limit_is_missed() -> None:
    checks = row_checks("usr: after 1 % change", Numbers(1, 1, 1, 1040), Numbers(4, 4, 1, 1000))
    vault = next(c for c in checks if c.name == "vault")
    assert not vault.met
    assert "**missed**" in vault.text()


def test_speedup_target_only_for_first_backups_and_restores() -> None:
    check = speedup_check("tree: first backup", 8.74, 6.80)
    assert check is not None and round(check.ratio, 2) == 1.29 and not check.met
    restic_like = speedup_check("tree: restore", 16.2, 8.7)
    assert restic_like is not None and restic_like.met
    assert speedup_check("tree: unchanged", 2.0, 1.0) is None


def test_vm_targets() -> None:
    full = vm_checks("full backup", Numbers(14.0, 6.6, 1), Numbers(10.2, 4.1, 1))
    assert [(c.name, c.met) for c in full] == [("wall", False)]
    incr = vm_checks("incremental 1 %", Numbers(1.0, 1.1, 1), Numbers(2.0, 1.0, 1))
    assert [(c.name, c.met) for c in incr] == [("wall", True), ("CPU", True)]
    assert vm_checks("restore", Numbers(1, 1, 1), Numbers(1, 1, 1)) == []


@pytest.fixture(scope="module")
def report() -> ModuleType:
    """bench/report.py as the harness imports it (its folder on sys.path)."""
    return bench_module("report")


def _measurement(report: ModuleType, op: str, tool: str, run: int, wall: float) -> Any:
    sample = report.Sample(wall=wall, cpu=wall * 1.5, max_rss=64 << 20, load1=2.0, steal_pct=3.0)
    return report.Measurement(op, tool, run, sample, 100 << 20 if "backup" in op else None)


def test_report_medians_targets_scaling_and_machine_state(report: ModuleType) -> None:
    rows = []
    for run, (mine, ref) in enumerate([(4.0, 10.0), (9.0, 10.0), (5.0, 12.0)]):
        for cores, factor in ((1, 1.9), (2, 1.0)):
            op = op_name("tree", "first backup", cores)
            rows.append(_measurement(report, op, "strongroom", run, mine * factor))
            rows.append(_measurement(report, op, "restic", run, ref * factor))
    text = report.render_markdown(rows, ["strongroom", "restic"], ["head"], {}, 2)
    # medians over 3 runs: strongroom 5.0 s, restic 10.0 s at 2 cores
    assert "| tree: first backup [2 cores] | strongroom | 5.00 | 7.50 | 1.50 |" in text
    assert "| tree: first backup [2 cores] | restic | 10.00 |" in text
    assert "wall 0.50x (<= 0.5): met" in text
    assert "| first backup: wall | <= 0.5x | 2 of 2 |" in text
    # speedup 9.5 / 5.0 = 1.90x, met
    assert "| tree: first backup | strongroom | 9.50 | 5.00 | 1.90x |" in text
    assert "speedup 1.90x (>= 1.7): met" in text
    assert "| 14.25 / 7.50 | - / - |" in text  # CPU; no busy time recorded (older results)
    assert "| tree | 1 | 4 | 2.0 / 2.0 | 3.0 / 3.0 |" in text


def test_scaling_shows_the_machines_busy_cores(report: ModuleType) -> None:
    """A command pinned to one core whose kernel work (writeback) ran on another shows more
    than one busy core beside its speedup."""
    rows = []
    for cores, wall, busy in ((1, 3.0, 60.0), (2, 2.0, 95.0)):
        sample = report.Sample(wall=wall, cpu=wall, max_rss=1 << 20, busy_pct=busy)
        rows.append(
            report.Measurement(op_name("small", "restore", cores), "strongroom", 0, sample, None)
        )
    text = report.render_markdown(rows, ["strongroom"], ["head"], {}, 2)  # the measured 2
    assert "| 1.50x | 3.00 / 2.00 | 1.20 / 1.90 |" in text
    assert "which `taskset` does not pin" in text


def test_report_shows_pss_beside_rss(report: ModuleType) -> None:
    rows = []
    for tool, pss in (("strongroom", 48), ("restic", 96)):
        sample = report.Sample(wall=1.0, cpu=1.0, max_rss=128 << 20, max_pss=pss << 20)
        rows.append(report.Measurement("tree: restore", tool, 0, sample, None))
    text = report.render_markdown(rows, ["strongroom", "restic"], ["head"], {}, 2)
    assert "| tree: restore | strongroom | 1.00 | 1.00 | 1.00 | 128 (48) |" in text
    assert "| 1.00x / 1.00x / 1.00x / 0.50x |" in text  # wall / CPU / RSS / PSS, no vault


def _restic_key(repo: Path, n: int, r: int, p: int) -> None:
    """A key file as ``restic init`` writes it (plain JSON; the key itself is sealed)."""
    keys = repo / "keys"
    keys.mkdir(parents=True)
    doc: dict[str, object] = {"created": "2026-12-03T16:00:00Z", "hostname": "bench"}
    doc |= {"kdf": "scrypt", "N": n, "r": r, "p": p, "salt": "c2FsdA==", "data": "AAAA"}
    (keys / "4f1b2c").write_text(json.dumps(doc))


def test_restic_key_cost_is_read_from_its_key_file(tmp_path: Path) -> None:
    tools = bench_module("tools")
    ws = tools.Workspace(tmp_path / "repo", tmp_path / "cache", tmp_path / "restore")
    restic = tools.Restic("restic")
    assert restic.key_params(ws) == {}  # no repository yet
    (ws.repo / "keys").mkdir(parents=True)
    (ws.repo / "keys" / "broken").write_text("{not json")
    assert restic.key_params(ws) == {}
    shutil.rmtree(ws.repo)
    _restic_key(ws.repo, 32768, 8, 3)
    assert restic.key_params(ws) == {"scrypt_n": 32768, "scrypt_r": 8, "scrypt_p": 3}
    assert tools.Strongroom("strongroom", exe="strongroom").key_params(ws) == {}


def test_report_notes_restic_key_cost_median_over_runs(report: ModuleType) -> None:
    rows = []
    for run, p in enumerate((1, 8, 3)):  # each run's repository calibrated its own
        sample = report.Sample(wall=1.0, cpu=1.0, max_rss=64 << 20)
        extra = {"scrypt_n": 32768, "scrypt_r": 8, "scrypt_p": p}
        rows.append(report.Measurement("big: unchanged", "restic", run, sample, 1, extra))
        rows.append(report.Measurement("big: unchanged", "strongroom", run, sample, 1, {}))
    text = report.render_markdown(rows, ["strongroom", "restic"], ["head"], {}, 2)
    restic_row = next(line for line in text.splitlines() if "| restic |" in line)
    assert "key: scrypt N=32768 r=8 p=3" in restic_row
    mine = next(line for line in text.splitlines() if "big: unchanged | strongroom" in line)
    assert "scrypt" not in mine

"""forget, points --deleted, undelete, prune, settings and check --repair from the command line."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from strongroom.cli.main import main
from strongroom.storage import open_backend
from strongroom.vault import Vault
from tests.vault.helpers import random_chunks, write_point

PW = "cli passphrase"


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("STRONGROOM_PASSWORD", PW)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STRONGROOM_VAULT", raising=False)
    monkeypatch.delenv("STRONGROOM_LOCK_WAIT", raising=False)
    yield


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def loc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    where = str(tmp_path / "v")
    code, _, err = run(capsys, "init", "--vault", where, "--kdf-memory", "1", "--kdf-time", "1")
    assert code == 0, err
    return where


def daily_points(loc: str, days: int) -> list[str]:
    vault = Vault.open(open_backend(loc), PW)
    now = datetime.now(UTC)
    ids = []
    for d in range(days):
        when = (now - timedelta(days=d, hours=1)).isoformat()
        ids.append(write_point(vault, random_chunks(d, 2, 8192), source="web", time=when))
    return [w.point.point_id for w in ids]


def test_forget_explains_and_soft_deletes(loc: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = daily_points(loc, 5)
    code, out, _ = run(capsys, "forget", "--vault", loc, "--keep-last", "2", "--dry-run", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["dry_run"] and doc["forgotten"] == 0
    actions = {p["id"]: (p["action"], p["reasons"]) for p in doc["groups"][0]["points"]}
    assert actions[ids[0]] == ("keep", ["last 2"]) and actions[ids[4]] == ("forget", [])
    code, out, _ = run(capsys, "forget", "--vault", loc, "--keep-last", "2", "--keep-daily", "3")
    assert code == 0 and "forgot 2 recovery point(s)" in out and "daily" in out
    code, out, _ = run(capsys, "points", "--vault", loc, "--json")
    assert [p["id"] for p in json.loads(out)] == ids[2::-1]
    code, out, _ = run(capsys, "points", "--vault", loc, "--deleted", "--json")
    deleted = json.loads(out)
    assert {p["id"] for p in deleted} == set(ids[3:])
    assert "retention policy" in deleted[0]["deleted"]["reason"]
    code, out, _ = run(capsys, "undelete", "--vault", loc, ids[4][:10])
    assert code == 0 and "is back" in out
    code, out, _ = run(capsys, "points", "--vault", loc, "--deleted", "--json")
    assert [p["id"] for p in json.loads(out)] == [ids[3]]


def test_forget_needs_a_policy(loc: str, capsys: pytest.CaptureFixture[str]) -> None:
    daily_points(loc, 1)
    code, _, err = run(capsys, "forget", "--vault", loc)
    assert code == 1 and "no policy" in err
    code, _, err = run(capsys, "forget", "--vault", loc, "--keep-within", "3x")
    assert code == 2 and "not a duration" in err


def test_immutability_from_the_cli(loc: str, capsys: pytest.CaptureFixture[str]) -> None:
    ids = daily_points(loc, 3)
    code, out, _ = run(capsys, "settings", "--vault", loc, "--immutable-days", "30", "--json")
    assert code == 0 and json.loads(out)["immutable_days"] == 30
    code, _, err = run(capsys, "settings", "--vault", loc, "--immutable-days", "3")
    assert code == 1 and "never lowered" in err
    code, out, _ = run(capsys, "forget", "--vault", loc, "--keep-last", "1")
    assert code == 0 and "immutable until" in out and "forgot 0" in out
    code, out, err = run(capsys, "forget", "--vault", loc, ids[2])
    assert code == 1 and "immutable until" in out and "are immutable" in err
    code, out, _ = run(capsys, "points", "--vault", loc, "--json")
    assert len(json.loads(out)) == 3


def test_prune_dry_run_and_run(loc: str, capsys: pytest.CaptureFixture[str]) -> None:
    daily_points(loc, 4)
    run(capsys, "settings", "--vault", loc, "--soft-delete-days", "0")
    run(capsys, "forget", "--vault", loc, "--keep-last", "1")
    args = ["prune", "--vault", loc, "--grace-hours", "0", "--repack-threshold", "90%"]
    code, out, _ = run(capsys, *args, "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] and len(plan["points_removed"]) == 3
    code, out, _ = run(capsys, *args, "--max-repack-size", "10M")
    assert code == 0 and "freed" in out and "3 removed" in out
    code, out, _ = run(capsys, "check", "--vault", loc, "--read-data", "--json")
    assert code == 0 and json.loads(out)["ok"]
    code, _, err = run(capsys, *args, "--repack-threshold", "150%")
    assert code == 2 and "between 0% and 100%" in err


def test_check_repair(loc: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    daily_points(loc, 2)
    for index in (tmp_path / "v" / "index").iterdir():
        index.unlink()
    code, _, _ = run(capsys, "check", "--vault", loc)
    assert code == 1
    code, out, _ = run(capsys, "check", "--vault", loc, "--repair")
    assert code == 0 and "it was in no index" in out and "no errors were found" in out
    code, out, _ = run(capsys, "check", "--vault", loc, "--repair", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["repair"]["packs_newly_indexed"] == []


def _stored_text(capsys: pytest.CaptureFixture[str], loc: str, tree: Path) -> int:
    code, _, err = run(capsys, "backup", "files", "--vault", loc, str(tree))
    assert code == 0, err
    code, out, _ = run(capsys, "stats", "--vault", loc, "--json")
    return int(json.loads(out)["unique_stored_bytes"])


def test_compression_level_is_recorded_changed_and_used(
    loc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "settings", "--vault", loc, "--json")
    assert code == 0 and json.loads(out)["compression_level"] == 2  # the default
    tree = tmp_path / "text"
    tree.mkdir()
    rng = random.Random(1)
    words = [
        "".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(3000)
    ]
    (tree / "a.txt").write_text(" ".join(rng.choice(words) for _ in range(200_000)))
    fast = str(tmp_path / "fast")
    code, _, err = run(
        capsys, "init", "--vault", fast, "--kdf-memory", "1", "--kdf-time", "1",
        "--compression-level", "1",
    )  # fmt: skip
    assert code == 0, err
    code, out, _ = run(capsys, "settings", "--vault", fast, "--json")
    assert json.loads(out)["compression_level"] == 1
    code, out, _ = run(capsys, "settings", "--vault", loc, "--compression-level", "19", "--json")
    assert code == 0 and json.loads(out)["compression_level"] == 19
    reopened = Vault.open(open_backend(loc), PW)
    assert reopened.config.settings.compression_level == 19
    assert _stored_text(capsys, loc, tree) < _stored_text(capsys, fast, tree) * 0.95
    for bad in ("0", "20", "-3"):
        code, _, err = run(capsys, "settings", "--vault", loc, "--compression-level", bad)
        assert code == 2 and "compression-level" in err, err
        code, _, err = run(
            capsys, "init", "--vault", str(tmp_path / bad), "--compression-level", bad
        )
        assert code == 2 and not (tmp_path / bad).exists()
    assert Vault.open(open_backend(loc), PW).config.settings.compression_level == 19

"""Tokens (expired, revoked, malformed, wrong secret), unknown vaults, the audit log, and
what the client and ``server run`` refuse before any request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from strongroom.errors import AccessDenied, BackendConfigError, RequestRefused
from strongroom.storage import open_backend
from strongroom.storage.http import HttpBackend, split_vault_url
from tests.server.conftest import Runner, Served, ServedVault, cli, new_token


def backend(url: str, token: str) -> HttpBackend:
    address, name = split_vault_url(url)
    return HttpBackend(address, name, token)


def audit(run: Runner, served: Served) -> list[dict[str, Any]]:
    code, out, err = run(served.admin, "audit", "--server", served.url, "--json", "--limit", "500")
    assert code == 0, err
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


def test_bad_tokens_and_vaults_are_clean_4xx(
    served: Served, vault: ServedVault, run: Runner
) -> None:
    short = new_token(run, served, "backup", "--expires", "0.00002")  # 1.7 s
    revoked = new_token(run, served, "restore")
    revoked_id = revoked.split("_")[1]
    code, _, err = run(served.admin, "token", "revoke", revoked_id, "--server", served.url)
    assert code == 0, err
    good = vault.tokens["backup"]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    time.sleep(1.8)
    cases = {
        short: "has expired",
        revoked: "was revoked",
        "srt_nonsense": "malformed token",
        wrong_secret: "invalid token",
    }
    for token, reason in cases.items():
        with pytest.raises(AccessDenied, match=f"{reason}.*HTTP 401"):
            backend(vault.url, token).get("config")
        code, _, err = run(token, "points", "--vault", vault.url)
        assert code == 1 and err.count("\n") == 1 and reason in err, err
    with pytest.raises(RequestRefused, match=r"no vault 'nope'.*HTTP 404"):
        backend(f"{served.url}/nope", good).get("config")
    with pytest.raises(RequestRefused, match=r"invalid vault name.*HTTP 400"):
        backend(f"{served.url}/-x", good).list()
    code, _, err = run(good, "points", "--vault", f"{served.url}/nope")
    assert code == 1 and "no vault 'nope'" in err and err.count("\n") == 1

    log = audit(run, served)
    refused = [(e["token"], e["status"], e["detail"]) for e in log if e["status"] >= 400]
    assert (short.split("_")[1], 401, f"token {short.split('_')[1]} has expired") in refused
    assert (revoked_id, 401, f"token {revoked_id} was revoked") in refused
    assert (None, 401, "malformed token") in refused
    assert any(e["vault"] == "nope" and e["status"] == 404 for e in log)
    assert all(e["client"] == "127.0.0.1" and e["time"] for e in log)


def test_admin_manages_tokens(served: Served, run: Runner) -> None:
    code, out, err = run(
        served.admin, "token", "create", "--role", "backup", "--source", "web",
        "--expires", "30", "--label", "nightly prune", "--server", served.url, "--json",
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["role"] == "backup" and made["sources"] == ["web"]
    assert made["token"].startswith(f"srt_{made['id']}_")
    code, out, _ = run(served.admin, "token", "list", "--server", served.url, "--json")
    listed = {t["id"]: t for t in json.loads(out)}
    assert listed[made["id"]]["label"] == "nightly prune" and "token" not in listed[made["id"]]
    assert made["token"] not in out
    code, _, err = run(made["token"], "token", "list", "--server", served.url)
    assert code == 1 and "backup token cannot list tokens (HTTP 403)" in err
    code, _, err = run(served.admin, "token", "create", "--role", "root", "--server", served.url)
    assert code == 1 and "unknown role 'root'" in err
    code, _, err = run(served.admin, "token", "revoke", "0123456789abcdef", "--server", served.url)
    assert code == 1 and "no token" in err
    # the catalog holds no secret: only SHA-256 of each
    secret = made["token"].split("_", 2)[2]  # srt_ID_SECRET; the secret may hold "_" too
    assert secret.encode() not in (served.data / "catalog.sqlite").read_bytes()


def test_token_file_and_missing_token(
    served: Served, vault: ServedVault, run: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRONGROOM_TOKEN", raising=False)
    with pytest.raises(BackendConfigError, match="no server token"):
        open_backend(vault.url)
    path = tmp_path / "token"
    path.write_text(vault.tokens["restore"] + "\n")
    monkeypatch.setenv("STRONGROOM_TOKEN_FILE", str(path))
    b = open_backend(vault.url)
    assert b.stat("config").size > 0
    b.close()


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError, match="plain HTTP"):
        split_vault_url("http://backup.example.com/v")
    split_vault_url("https://backup.example.com:8443/prefix/v")
    proc = cli("server", "run", "--data", str(tmp_path), "--listen", "0.0.0.0:1")
    assert proc.returncode == 1 and "refusing plain HTTP on 0.0.0.0" in proc.stderr
    proc = cli("server", "run", "--data", str(tmp_path / "none"), "--listen", "127.0.0.1:1")
    assert proc.returncode == 1 and "no server catalog" in proc.stderr


def test_client_loads_no_server_framework(served: Served, vault: ServedVault) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from strongroom.cli.main import main
        code = main(["points", "--vault", {vault.url!r}, "--json"])
        heavy = [m for m in ("fastapi", "starlette", "uvicorn", "pydantic", "sqlite3")
                 if m in sys.modules]
        print(code, heavy, file=sys.stderr)
        """
    )
    env = {**os.environ, "STRONGROOM_TOKEN": vault.tokens["restore"]}
    env["STRONGROOM_PASSWORD"] = "server test passphrase"
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert proc.stderr.strip().splitlines()[-1] == "0 []", proc.stderr

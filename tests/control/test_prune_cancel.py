"""A prune job's cancel: honoured while prune only plans (nothing deleted, no lock left), and
the same job run without a cancel prunes and says what it freed (a real local vault)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom.agent.client import AgentClient
from strongroom.agent.prunework import prune_job
from strongroom.agent.work import PROGRESS_ENV, JobCancelled, Reporter
from strongroom.files import BackupOptions, backup_files
from strongroom.vault import Vault


def _names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_cancel_while_planning_changes_nothing(
    local_vault: Vault, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "3600")  # the reporter never calls the (absent) server
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100_000))
    backup_files(local_vault, BackupOptions([str(src)], source="s"))
    root = tmp_path / "vault"
    before = {n for n in _names(root) if not n.startswith("locks/")}
    client = AgentClient("http://127.0.0.1:9", "unused", wait=0)
    work = {"job": 1, "kind": "prune", "vault": "v", "grace_hours": 0}
    with Reporter(client, 1, 0) as reporter:
        reporter.cancelled.set()
        with pytest.raises(JobCancelled):
            prune_job(local_vault, work, reporter)
    assert _names(root) == before  # no lock left, nothing deleted or written
    with Reporter(client, 1, 0) as reporter:
        done = prune_job(local_vault, work, reporter)
    assert done.state == "succeeded"
    assert any(line.startswith("freed ") for line in done.log), done.log
    client.close()

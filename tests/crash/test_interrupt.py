"""SIGINT or SIGTERM during a backup: exit 130, one line saying nothing was committed, no
temporary pack left in the vault, and the next backup works."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE
from tests.crash._support import (
    CHILD_PATH,
    ROOT,
    Run,
    checked,
    cli,
    init_vault,
    killed,
    make_tree,
    ok,
    open_vault,
    restored_tree,
    snapshot_tree,
    temp_files,
)


def _paused_env(vault: Path, failpoint: str, pause: Path) -> dict[str, str]:
    """A child's environment: this checkout, the vault, and ``failpoint`` pausing at ``pause``."""
    return {
        **os.environ,
        "PYTHONPATH": CHILD_PATH,
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "STRONGROOM_VAULT": str(vault),
        "STRONGROOM_FAILPOINT": failpoint,
        "STRONGROOM_FAILPOINT_PAUSE": str(pause),
    }


def _pause_and_signal(vault: Path, source: Path, sig: signal.Signals, pause: Path) -> Run:
    """Back up ``source``; when the fifth streamed pack segment is about to be written (a
    pack upload in progress, its temporary file open), send ``sig``, then let it go on."""
    env = _paused_env(vault, "pack-segment@5", pause)
    cmd = [sys.executable, "-m", "strongroom.cli.main", "backup", "files", str(source)]
    proc = subprocess.Popen(
        [*cmd, "--no-cache"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while not pause.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the failpoint was never reached"
            time.sleep(0.01)
        assert temp_files(vault), "the paused upload should have a temporary pack open"
        proc.send_signal(sig)
        time.sleep(0.2)  # the signal is handled while the upload is still paused
        pause.unlink()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Run(proc.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupted_backup_says_so_and_cleans_up(tmp_path: Path, sig: signal.Signals) -> None:
    vault, source = tmp_path / "vault", tmp_path / "src"
    init_vault(vault, pack_mib=4)
    rng = random.Random(7)
    source.mkdir()
    (source / "big.bin").write_bytes(rng.randbytes(24 << 20))  # incompressible: 6 packs
    run = _pause_and_signal(vault, source, sig, tmp_path / "paused")

    assert run.code == 130, run.err
    line = f"error: interrupted by {sig.name}: nothing was committed"
    assert run.err.startswith(line) and run.err.count("\n") == 1, run.err
    assert "safe to leave" in run.err
    assert not temp_files(vault)
    assert open_vault(vault).points() == []
    assert not list((vault / "locks").iterdir())

    make_tree(tmp_path / "small", seed=3, files=4, size=200_000)
    backed = ok(cli(vault, "backup", "files", str(tmp_path / "small"), "--json")).json()
    got = restored_tree(vault, str(backed["point"]), tmp_path / "small", tmp_path / "out")
    assert got == snapshot_tree(tmp_path / "small")
    assert not checked(vault).errors


def test_lock_of_a_killed_backup_is_removed_by_the_next_command(tmp_path: Path) -> None:
    """kill -9 leaves the lock behind; its process is gone on this host, so the next command
    (even one that only reads) removes it instead of waiting 30 minutes for it to go stale."""
    vault, source = tmp_path / "vault", tmp_path / "src"
    init_vault(vault)
    make_tree(source, seed=4, files=4, size=200_000)
    killed(cli(vault, "backup", "files", str(source), failpoint="after-packs"))
    assert len(list((vault / "locks").iterdir())) == 1
    ok(cli(vault, "points"))
    assert not list((vault / "locks").iterdir())
    killed(cli(vault, "backup", "files", str(source), failpoint="after-packs"))
    ok(cli(vault, "backup", "files", str(source)))  # no conflict, and the lock goes
    assert not list((vault / "locks").iterdir())


def _interrupt_at_paused_worker(
    argv: list[str], env: dict[str, str], pause: Path
) -> tuple[int, str, int]:
    """Run the CLI with ``argv``; once a worker process is paused at its failpoint, SIGINT the
    parent.  Returns how it ended and the paused worker's pid."""
    cmd = [sys.executable, "-m", "strongroom.cli.main", *argv]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not pause.exists() or not pause.read_text().endswith("\n"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker process reached its failpoint"
            time.sleep(0.01)
        worker = int(pause.read_text().split()[0])
        assert worker != proc.pid
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode(), worker


def test_interrupt_with_worker_processes_stops_them_and_cleans_up(tmp_path: Path) -> None:
    """A tree big enough for worker processes (files/procpool.py): one of them is paused at
    its fifth folder when the backup gets SIGINT; the workers are stopped, nothing is left
    in the vault, and the paused worker is gone."""
    vault, source = tmp_path / "vault", tmp_path / "src"
    init_vault(vault)
    rng = random.Random(11)
    # workers start after 3,000 entries and take 0.4 s to come up: the parent must not have
    # walked the whole tree by then (400 folders of 30 files it once took 0.8 s to)
    for d in range(1200):
        folder = source / f"d{d:03}"
        folder.mkdir(parents=True)
        for i in range(30):
            (folder / f"f{i:02}").write_bytes(rng.randbytes(512))
    pause = tmp_path / "paused"
    env = _paused_env(vault, "procwork-dir@5", pause)
    argv = ["backup", "files", str(source), "--processes", "2"]
    code, err, worker = _interrupt_at_paused_worker(argv, env, pause)
    assert code == 130, err
    assert err.startswith("error: interrupted by SIGINT: nothing was committed")
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
    assert not temp_files(vault)
    assert open_vault(vault).points() == []
    assert not list((vault / "locks").iterdir())


def test_interrupted_restore_with_worker_processes_stops_them_and_cleans_up(
    tmp_path: Path,
) -> None:
    """A restore whose files go to worker processes (files/restoreprocs.py): one worker is
    paused at its second batch when the restore gets SIGINT; the workers are stopped and no
    temporary file is left in the target."""
    vault, source, target = tmp_path / "vault", tmp_path / "src", tmp_path / "out"
    init_vault(vault)
    for d in range(100):
        folder = source / f"d{d:03}"
        folder.mkdir(parents=True)
        for i in range(40):
            (folder / f"f{i:02}").write_bytes(b"%d-%d" % (d, i))
    ok(cli(vault, "backup", "files", str(source)))
    pause = tmp_path / "paused"
    env = _paused_env(vault, "restorework-batch@2", pause)
    argv = ["restore", "files", "latest", "--target", str(target), "--processes", "2"]
    code, err, worker = _interrupt_at_paused_worker(argv, env, pause)
    assert code == 130, err
    assert err.startswith("error: interrupted by SIGINT"), err
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
    leftovers = [
        name
        for _dir, dirs, files in os.walk(target)
        for name in dirs + files
        if name.startswith(".strongroom-tmp-")
    ]
    assert not leftovers
    assert not list((vault / "locks").iterdir())

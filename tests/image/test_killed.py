"""``kill -9`` in the middle of a backup or restore: no qemu-nbd outlives strongroom, and the
next run removes the private folder and the temporary image a killed run left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ._vm import MiB, cli, identical, run

pytestmark = pytest.mark.usefixtures("image_tools")
ROOT = Path(__file__).resolve().parents[2]


def _killed_child(tmp: Path, failpoint: str, *args: str | Path) -> int:
    """Run the CLI in a child that SIGKILLs itself at ``failpoint``; the child's pid."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
        "TMPDIR": str(tmp),
        "STRONGROOM_FAILPOINT": failpoint,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "strongroom.cli.main", *(str(a) for a in args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    return proc.pid


def _servers(tmp: Path) -> list[int]:
    """qemu-nbd processes serving a socket under ``tmp``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-nbd") and str(tmp).encode() in b" ".join(argv):
            found.append(int(entry.name))
    return found


def _no_servers_survive(tmp: Path) -> None:
    deadline = time.monotonic() + 5
    while (left := _servers(tmp)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:  # do not leak them into other tests, then fail
        os.kill(pid, signal.SIGKILL)
    assert left == [], "qemu-nbd outlived the killed strongroom"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for this test and its children: qemu-nbd's folders land here."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A 64 MiB qcow2 holding 3 MiB of random data."""
    raw = tmp_path / "d.raw"
    run("qemu-img", "create", "-q", "-f", "raw", raw, "64M")
    with open(raw, "r+b") as f:
        f.seek(MiB)
        f.write(os.urandom(3 * MiB))
    out = tmp_path / "d.qcow2"
    run("qemu-img", "convert", "-O", "qcow2", raw, out)
    return out


def test_killed_backup_leaves_no_server(vault_env: Path, private_tmp: Path, image: Path) -> None:
    pid = _killed_child(private_tmp, "image-backup-chunk@2", "backup", "disk", image)
    _no_servers_survive(private_tmp)
    assert [p.name.split("-")[2] for p in private_tmp.iterdir()] == [str(pid)]
    result = cli("backup", "disk", image, "--json")
    assert result.code == 0, result.err
    assert list(private_tmp.iterdir()) == []  # the dead run's folder went too


def test_next_run_stops_a_dead_runs_server(
    vault_env: Path, private_tmp: Path, image: Path, tmp_path: Path
) -> None:
    """A qemu-nbd left by a run that died before this fix: the next run ends it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    folder = private_tmp / f"strongroom-nbd-{dead.pid}-abcd1234"
    folder.mkdir(mode=0o700)
    other = tmp_path / "other.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", other, "1M")
    socket = folder / "disk.sock"
    command = ["qemu-nbd", "--persistent", "--read-only", f"--socket={socket}", "-f", "qcow2"]
    server = subprocess.Popen([*command, str(other)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cli("backup", "disk", image).code == 0
        assert server.wait(timeout=5) == -signal.SIGKILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_killed_restore_leftover_removed(
    vault_env: Path, private_tmp: Path, image: Path, tmp_path: Path, fmt: str
) -> None:
    result = cli("backup", "disk", image, "--json")
    assert result.code == 0, result.err
    point = result.json()["point"]
    out = tmp_path / "out"
    out.mkdir()
    dest = out / f"r.{fmt}"
    _killed_child(private_tmp, "image-restore-chunk@2", "restore", "disk", point, "--to", dest)
    _no_servers_survive(private_tmp)
    leftovers = list(out.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".{dest.name}.strongroom-")
    keep = out / f".{dest.name}.strongroom-{os.uname().nodename}-1-00000000.tmp"
    keep.write_bytes(b"pid 1 still runs")  # not a dead run's: stays
    result = cli("restore", "disk", point, "--to", dest)
    assert result.code == 0, result.err
    assert sorted(out.iterdir()) == sorted([dest, keep])
    assert identical(dest, fmt, image, "qcow2")


def test_killed_vm_restore_leftover_removed(
    vault_env: Path, private_tmp: Path, image: Path, tmp_path: Path
) -> None:
    xml = tmp_path / "vm.xml"
    xml.write_text(
        "<domain type='qemu'><name>k</name><devices><disk type='file' device='disk'>"
        f"<driver name='qemu' type='qcow2'/><source file='{image}'/>"
        "<target dev='vda' bus='virtio'/></disk></devices></domain>"
    )
    result = cli("backup", "vm", "--xml", xml, "--json")
    assert result.code == 0, result.err
    point = result.json()["point"]
    out = tmp_path / "out"
    out.mkdir()
    args = ("restore", "vm", point, "--as-new", "twin", "--disk-dir", out)
    _killed_child(private_tmp, "image-restore-chunk@2", *args)
    _no_servers_survive(private_tmp)
    assert [p.name.startswith(".twin-vda.qcow2.strongroom-") for p in out.iterdir()] == [True]
    result = cli(*args)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["twin-vda.qcow2", "twin.xml"]
    assert identical(out / "twin-vda.qcow2", "qcow2", image, "qcow2")

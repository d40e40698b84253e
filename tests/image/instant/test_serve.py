"""``strongroom serve`` against real NBD clients: nbdinfo, qemu-img, qemu-io, nbdcopy."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from tests.image._vm import cli, run

from ._serve import serving, sr_env, vault_hashes
from .conftest import Served

MiB = 1 << 20


def test_list_map_and_compare(served: Served, sockdir: Path) -> None:
    sock = sockdir / "nbd.sock"
    with serving(served.vault, served.point, "--socket", sock) as uris:
        assert uris == {t: f"nbd+unix:///{t}?socket={sock}" for t in ("vda", "vdb")}
        listing = json.loads(run("nbdinfo", "--json", "--list", f"nbd+unix://?socket={sock}"))
        exports = {e["export-name"]: e for e in listing["exports"]}
        assert set(exports) == {"vda", "vdb"}
        assert exports["vda"]["export-size"] == 128 * MiB and exports["vda"]["is_read_only"]
        for target, restored in served.restored.items():
            out = run("qemu-img", "compare", "-f", "raw", "-F", "raw", restored, uris[target])
            assert "identical" in out, target
        extents = json.loads(run("nbdinfo", "--json", "--map", uris["vda"]))
        holes = sum(e["length"] for e in extents if e["type"] == 3)  # hole,zero
        assert holes > 64 * MiB  # the sample disk is mostly empty: no bytes sent for it


def test_nbdcopy_two_clients_at_once(served: Served, sockdir: Path, tmp_path: Path) -> None:
    sock = sockdir / "nbd.sock"
    with serving(served.vault, served.point, "--socket", sock) as uris:
        outs = {t: tmp_path / f"{t}.raw" for t in ("vda", "vdb")}
        failures: list[str] = []

        def copy(target: str) -> None:
            proc = subprocess.run(
                ["nbdcopy", uris[target], str(outs[target])], capture_output=True, check=False
            )
            if proc.returncode:
                failures.append(proc.stderr.decode())

        threads = [threading.Thread(target=copy, args=(t,)) for t in outs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
    for target, out in outs.items():
        assert out.read_bytes() == served.restored[target].read_bytes(), target


def test_read_only_refuses_writes(served: Served, sockdir: Path) -> None:
    sock = sockdir / "nbd.sock"
    with serving(served.vault, served.point, "--socket", sock, "--disk", "vdb", count=1) as uris:
        assert list(uris) == ["vdb"]
        proc = subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0xab 0 64k", uris["vdb"]],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0 or "failed" in proc.stdout + proc.stderr


def test_writable_overlay_never_the_vault(served: Served, sockdir: Path, tmp_path: Path) -> None:
    before = vault_hashes(served.vault)
    sock = sockdir / "nbd.sock"
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    args = ("--socket", sock, "--writable", "--overlay-dir", overlays, "--disk", "vda")
    with serving(served.vault, served.point, *args, count=1) as uris:
        uri = uris["vda"]
        run("qemu-io", "-f", "raw", "-c", "write -P 0xab 1000000 70000", "-c", "flush", uri)
        run("qemu-io", "-f", "raw", "-c", "read -P 0xab 1000000 70000", uri)
        # the rest of the blocks around the write still hold the point's data
        original = served.restored["vda"].read_bytes()
        copy = tmp_path / "vda.raw"
        run("nbdcopy", uri, copy)
    data = copy.read_bytes()
    expected = original[:1000000] + b"\xab" * 70000 + original[1070000:]
    assert data == expected
    overlay = (overlays / "vda.overlay").read_bytes()
    assert overlay[1000000:1070000] == b"\xab" * 70000
    assert vault_hashes(served.vault) == before


def test_prune_refused_while_served(served: Served, sockdir: Path) -> None:
    sock = sockdir / "nbd.sock"
    env = sr_env(served.vault)
    with serving(served.vault, served.point, "--socket", sock):
        with_env = subprocess.run(
            [*_cli(), "prune", "--lock-wait", "0"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert with_env.returncode == 1 and "locked" in with_env.stderr, with_env.stderr
    after = subprocess.run([*_cli(), "prune"], env=env, capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stderr


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "strongroom.cli.main"]


def test_usage_errors(served: Served, sockdir: Path, monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setenv("STRONGROOM_VAULT", str(served.vault))
    mp.setenv("STRONGROOM_PASSWORD", "x")
    try:
        assert cli("serve", served.point).code == 2
        both = cli("serve", served.point, "--socket", sockdir / "s", "--listen", "127.0.0.1:1")
        assert both.code == 2
        assert cli("serve", served.point, "--listen", "nohost").code == 2
        overlay = cli("serve", served.point, "--socket", sockdir / "s", "--overlay-dir", "/tmp")
        assert overlay.code == 2
    finally:
        mp.undo()


def test_missing_data_is_an_error_never_zeros(
    served: Served, sockdir: Path, tmp_path: Path
) -> None:
    import shutil

    vault = tmp_path / "vault"
    shutil.copytree(served.vault, vault)
    sock = sockdir / "nbd.sock"
    with serving(vault, served.point, "--socket", sock, "--disk", "vda", count=1) as uris:
        shutil.rmtree(vault / "data")  # after the start-up check: the packs vanish
        proc = subprocess.run(
            ["nbdcopy", uris["vda"], str(tmp_path / "out.raw")], capture_output=True, check=False
        )
        assert proc.returncode != 0

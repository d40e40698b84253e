"""A running guest backed up: full, then incrementals reading only dirty extents; app and
crash consistency; every point restores to the bytes the guest had at backup time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ._guest import Guest, MiB
from ._helpers import (
    backup,
    disk,
    freeze_log,
    init_vault,
    reason,
    restored_files,
    restored_sha,
    sr,
)

DISK = 64 * MiB


@pytest.fixture(scope="module")
def guest(make_guest: Callable[..., Guest]) -> Iterator[Guest]:
    g = make_guest("run")
    g.start()
    g.wait_agent()
    yield g
    g.remove()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_vault(tmp_path_factory.mktemp("run") / "vault")


def _state(g: Guest) -> str:
    """vda's bytes (written raw by dd, no filesystem: exact at any moment the guest idles).

    vdb holds a mounted ext4 whose journal and superblock the kernel writes by itself (a
    freeze writes them too), so its files and a clean fsck are checked instead."""
    g.sh.check("sync")
    return g.sha("vda")


def _checkpoints(g: Guest) -> list[str]:
    return sorted(cp.getName() for cp in g.dom.listAllCheckpoints())


def test_full_then_incremental_restore_exactly(
    guest: Guest, vault: Path, tmp_path: Path, conn: Any
) -> None:
    g = guest
    g.write("vda", 0, 4)
    g.sh.check("echo first > /mnt/a.txt")
    before = _state(g)
    p1 = backup(vault, g)
    assert p1["consistency"] == "app"
    assert [disk(p1, t)["read_mode"] for t in ("vda", "vdb")] == ["libvirt-pull-full"] * 2
    assert reason(p1, "vda") == "first-backup"
    assert freeze_log(g) == ["freeze", "thaw"]
    first_cp = disk(p1, "vda")["tracking"]["checkpoint"]
    assert _checkpoints(g) == [first_cp]

    # another tool's checkpoint is left alone and does not break strongroom's chain
    g.dom.checkpointCreateXML("<domaincheckpoint><name>othertool-1</name></domaincheckpoint>", 0)
    for offset in (10, 30, 50):
        g.write("vda", offset)
    g.sh.check("echo second > /mnt/b.txt")
    after = _state(g)
    p2 = backup(vault, g)
    vda = disk(p2, "vda")
    assert vda["read_mode"] == "libvirt-pull-dirty-bitmap"
    assert vda["change_mode"] == "dirty-bitmap"
    assert vda["tracking"]["chain"] == "continued"
    assert vda["tracking"]["base_point"] == p1["point"]
    assert vda["stats"]["bytes_read"] == 3 * MiB  # three dirty 1 MiB chunks of 64 MiB
    assert vda["stats"]["chunks_reused"] == 4
    assert disk(p2, "vdb")["stats"]["bytes_read"] <= 8 * MiB
    assert p2["bytes_read"] < DISK // 8
    assert p2["parent"] == p1["point"]
    new_cp = vda["tracking"]["checkpoint"]
    assert _checkpoints(g) == sorted(["othertool-1", new_cp])
    assert freeze_log(g) == ["freeze", "thaw"] * 2

    for point, state, files in ((p1, before, ["first"]), (p2, after, ["first", "second"])):
        assert restored_sha(vault, point["point"], "vda", tmp_path) == state
        names = ["a.txt", "b.txt"][: len(files)]
        found, fsck = restored_files(vault, point["point"], "vdb", tmp_path, names)
        assert list(found.values()) == files
        assert fsck == 0  # app-consistent: frozen, so the filesystem is clean


def test_crash_consistency_and_vm_list(guest: Guest, vault: Path, tmp_path: Path) -> None:
    g = guest
    g.write("vda", 20)
    state = _state(g)
    doc = backup(vault, g, "--consistency", "crash")
    assert doc["consistency"] == "crash"
    assert freeze_log(g) == ["freeze", "thaw"] * 2  # no freeze this time
    assert disk(doc, "vda")["stats"]["bytes_read"] == MiB
    assert restored_sha(vault, doc["point"], "vda", tmp_path) == state

    listed = sr(vault, "vm", "list", g.name, "--json")
    assert listed.code == 0, listed.err
    row = listed.json()[0]
    assert row["state"] == "running" and row["last_point"]["id"] == doc["point"]
    assert [d["target"] for d in row["disks"]] == ["vda", "vdb"]
    assert row["checkpoint"] == disk(doc, "vda")["tracking"]["checkpoint"]
    assert row["checkpoint_state"].startswith("in vault")
    assert row["other_checkpoints"] == 1
    text = sr(vault, "vm", "list")
    assert g.name in text.out and "running" in text.out

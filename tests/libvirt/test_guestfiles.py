"""Files out of a running guest's VM points: a file the guest writes between two backups is
found by ``diff`` and restored from the second point (vdb: ext4 on the bare disk, mounted
in the guest; the agent's freeze makes each point consistent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._guest import Guest
from ._helpers import backup, init_vault, sr


def test_file_written_between_backups_found_and_restored(
    make_guest: Callable[..., Guest], tmp_path: Path
) -> None:
    g = make_guest("gfiles")
    try:
        g.start()
        g.wait_agent()
        vault = init_vault(tmp_path / "vault")
        g.sh.check("echo before > /mnt/old.txt")
        p1 = backup(vault, g)["point"]
        g.sh.check("echo 'written by the guest' > /mnt/new.txt")
        p2 = backup(vault, g)["point"]
        r = sr(vault, "diff", p1, p2, "--json")
        assert r.code == 0, r.err
        assert {"path": "/vdb/whole/new.txt", "change": "added", "fields": []} in r.json()
        r = sr(vault, "find", "new.txt", "--point", p1, "--point", p2, "--json")
        assert [d["point"] for d in r.json()] == [p2], r.out + r.err
        out = tmp_path / "out"
        r = sr(vault, "restore", "files", p2, "/vdb/whole/new.txt", "--target", out, "--verify")
        assert r.code == 0, r.err
        assert (out / "vdb/whole/new.txt").read_text() == "written by the guest\n"
    finally:
        g.remove()

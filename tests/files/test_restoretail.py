"""The hard-link group members a restore by subtrees links at its end (files/restoretail.py):
each made or reported, by the parent alone when there are too few to share."""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.files import restoretail


def test_each_member_is_linked_or_its_failure_named(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.write_bytes(b"x")
    folder = os.fsencode(tmp_path)
    gone = os.fsencode(tmp_path / "gone")
    links = [
        (folder, b"a", os.fsencode(first)),
        (folder, b"b", gone),  # its first member is not there
        (folder, b"first", os.fsencode(first)),  # the name is taken
        (folder, b"c", os.fsencode(first)),
    ]
    made, failed = restoretail.links_shared([], links)  # no workers: all here
    assert made == 2
    assert [(dest, reason.split(":")[0]) for dest, reason in failed] == [
        (os.path.join(folder, b"b"), "cannot create hard link"),
        (os.path.join(folder, b"first"), "cannot create hard link"),
    ]
    assert os.path.samefile(tmp_path / "a", first) and os.path.samefile(tmp_path / "c", first)
    assert first.stat().st_nlink == 3

"""How much of a file is in the page cache (util-linux ``fincore``), for tests of what the
restore and direct-I/O code leave there."""

from __future__ import annotations

import subprocess
from pathlib import Path


def resident_pages(path: Path) -> int:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "PAGES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.split()[0])

"""Starting ``strongroom mount`` as a child process in tests, and never leaving a mount
behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


class Mounts:
    """Mounts started by one test; :meth:`close` (the fixture's teardown) ends them all."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, point: str, where: Path, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "strongroom.cli.main", "mount", point, str(where), *extra]
        proc = subprocess.Popen(cmd, env=self.env, stderr=subprocess.PIPE)
        self.started.append((proc, where))
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"mount exited {proc.returncode}: {err}")
            if time.monotonic() > deadline:
                pytest.fail("not mounted after 30 s")
            time.sleep(0.05)
        return proc

    def close(self) -> None:
        for proc, where in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if os.path.ismount(where):  # the child died without unmounting
                subprocess.run(["umount", "-l", str(where)], check=False)

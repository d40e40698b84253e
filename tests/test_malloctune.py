"""glibc's malloc thresholds are fixed in a files backup's processes (strongroom/malloctune.py):
a block over 1 MiB is mmapped, and given back, even after a bigger one was freed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.conftest import FAST_KDF, PASSPHRASE

# After a 2 MiB block is freed, is a 1.5 MiB one mmapped?  glibc's default raises its
# threshold to 2 MiB on that free, so the answer is no unless the thresholds are fixed.
_PROBE = textwrap.dedent(
    """
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    def mmapped_after_a_bigger_free():
        info = ctypes.CDLL(None).mallinfo2
        info.restype = MallInfo2
        big = bytearray(2 << 20)
        del big
        before = info().hblks
        block = bytearray(3 << 19)
        return info().hblks == before + 1
    """
)


def _run(code: str, argv: Sequence[str] = (), env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE + textwrap.dedent(code), *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_default_keeps_freed_blocks_and_the_tuned_threshold_does_not() -> None:
    assert _run("print(mmapped_after_a_bigger_free())") == "False"
    tuned = "from strongroom import malloctune\nassert malloctune.apply()\n"
    assert _run(tuned + "print(mmapped_after_a_bigger_free())") == "True"


def test_a_files_backup_applies_it_and_a_restore_does_not(tmp_path: Path) -> None:
    """Restores keep glibc's defaults: there the fixed thresholds cost CPU and saved nothing."""
    Vault.init(LocalBackend(tmp_path / "vault"), PASSPHRASE, kdf=FAST_KDF)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha")
    env = {
        **os.environ,
        "STRONGROOM_VAULT": str(tmp_path / "vault"),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    code = """
        import atexit, sys
        atexit.register(lambda: print(mmapped_after_a_bigger_free()))
        sys.argv = ["strongroom", *sys.argv[1:]]
        from strongroom.cli.entry import run
        run()
    """
    backup = ["backup", "files", str(tmp_path / "src"), "--json"]
    assert _run(code, backup, env).splitlines()[-1] == "True"
    restore = ["restore", "files", "latest", "-t", str(tmp_path / "out"), "--json"]
    assert _run(code, restore, env).splitlines()[-1] == "False"

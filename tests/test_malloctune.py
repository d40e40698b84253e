"""glibc's malloc thresholds are fixed in a files backup's processes (strongroom/malloctune.py):
a block over 1 MiB is mmapped, and given back, even after a bigger one was freed; a restore
of many small files keeps its threads' blocks in the main arena."""

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

    def a_new_thread_allocates_in_the_main_arena():
        # the main arena grows by brk: its blocks lie below the program break; a thread's
        # own arena is a heap mapped far above it
        import threading
        libc = ctypes.CDLL(None)
        libc.malloc.restype = libc.sbrk.restype = ctypes.c_void_p
        libc.malloc.argtypes, libc.sbrk.argtypes = (ctypes.c_size_t,), (ctypes.c_long,)
        libc.free.argtypes = (ctypes.c_void_p,)
        below = []
        def allocate():
            block = libc.malloc(1000)
            below.append(block < libc.sbrk(0))
            libc.free(block)
        thread = threading.Thread(target=allocate)
        thread.start()
        thread.join()
        return below[0]
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


def test_one_arena_puts_a_new_threads_blocks_in_the_main_arena() -> None:
    assert _run("print(a_new_thread_allocates_in_the_main_arena())") == "False"
    one = "from strongroom import malloctune\nassert malloctune.one_arena()\n"
    assert _run(one + "print(a_new_thread_allocates_in_the_main_arena())") == "True"


def test_a_restore_worker_takes_one_arena() -> None:
    """restorework's main sets it before anything else (here its input ends at once)."""
    code = """
        import os
        from strongroom.files import restorework
        mine, theirs = os.pipe()
        os.close(theirs)
        assert restorework.main(["restorework", str(mine)]) == 0
        print(a_new_thread_allocates_in_the_main_arena())
    """
    assert _run(code) == "True"


def _restore_env(tmp_path: Path) -> dict[str, str]:
    Vault.init(LocalBackend(tmp_path / "vault"), PASSPHRASE, kdf=FAST_KDF)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("alpha")
    return {
        **os.environ,
        "STRONGROOM_VAULT": str(tmp_path / "vault"),
        "STRONGROOM_PASSWORD": PASSPHRASE,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


_CLI = """
    import atexit, sys
    atexit.register(lambda: print(%s()))
    sys.argv = ["strongroom", *sys.argv[1:]]
    from strongroom.cli.entry import run
    run()
"""


def test_a_restore_with_worker_processes_takes_one_arena(tmp_path: Path) -> None:
    env = _restore_env(tmp_path)
    code = _CLI % "a_new_thread_allocates_in_the_main_arena"
    assert _run(code, ["backup", "files", str(tmp_path / "src"), "--json"], env)
    restore = ["restore", "files", "latest", "-t", str(tmp_path / "out"), "--json"]
    assert _run(code, restore, env).splitlines()[-1] == "False"  # one file: no processes
    restore = [*restore[:4], str(tmp_path / "out2"), "--processes", "1", "--json"]
    assert _run(code, restore, env).splitlines()[-1] == "True"


def test_a_files_backup_applies_it_and_a_restore_does_not(tmp_path: Path) -> None:
    """Restores keep glibc's thresholds: there the fixed ones cost CPU and saved nothing."""
    env = _restore_env(tmp_path)
    code = _CLI % "mmapped_after_a_bigger_free"
    backup = ["backup", "files", str(tmp_path / "src"), "--json"]
    assert _run(code, backup, env).splitlines()[-1] == "True"
    restore = ["restore", "files", "latest", "-t", str(tmp_path / "out"), "--json"]
    assert _run(code, restore, env).splitlines()[-1] == "False"

"""glibc's malloc thresholds are fixed in strongroom's processes (strongroom/malloctune.py):
a block over 1 MiB is mmapped, and given back, even after a bigger one was freed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_default_keeps_freed_blocks_and_the_tuned_threshold_does_not() -> None:
    assert _run("print(mmapped_after_a_bigger_free())") == "False"
    tuned = "from strongroom import malloctune\nassert malloctune.apply()\n"
    assert _run(tuned + "print(mmapped_after_a_bigger_free())") == "True"


def test_the_console_script_applies_it() -> None:
    code = """
        import atexit, sys
        atexit.register(lambda: print(mmapped_after_a_bigger_free()))
        sys.argv = ["strongroom", "version"]
        from strongroom.cli.entry import run
        run()
    """
    assert _run(code).splitlines()[-1] == "True"

"""The GIL-free scan (chunking/_gearcut.c) finds exactly fastcdc-py's cuts, and gives the GIL up
while it runs."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from fastcdc.fastcdc_cy import fastcdc_cy
from fastcdc.fastcdc_py import GEAR
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.chunking import CDCParams, ContentChunker, cdc

from ._support import seeded_bytes


def _reference(data: bytes, p: CDCParams) -> list[tuple[int, int]]:
    """fastcdc-py's compiled scan, as strongroom used it before."""
    return [(c.offset, c.length) for c in fastcdc_cy(data, p.min_size, p.avg_size, p.max_size)]


def test_the_package_build_made_the_scan() -> None:
    """setup.py builds it wherever the test set-up runs: no silent fallback here."""
    assert cdc._gearcut is not None


def test_gear_table_read_from_fastcdc_source_is_fastcdc_s() -> None:
    assert cdc._gear_table() == list(GEAR)


def test_chunking_does_not_load_the_fastcdc_package() -> None:
    """Its ``__init__`` loads click, 10 ms of every files command's start-up."""
    probe = "import sys, strongroom.chunking.cdc; print({'click', 'fastcdc'} & {*sys.modules})"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()"


_params = st.sampled_from(
    [
        CDCParams(64, 256, 1024),
        CDCParams(128, 256, 1024),  # min half of avg: the center size is below the minimum
        CDCParams(256, 1024, 4096),
        CDCParams(1024, 2048, 65536),
        CDCParams(4096, 65536, 262144),
    ]
)


@st.composite
def _contents(draw: st.DrawFn) -> bytes:
    """Short, repetitive or zero data from Hypothesis, or seeded random data."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=5000))
    return seeded_bytes(draw(st.integers(0, 2**32)), draw(st.integers(0, 1 << 20)))


@given(_contents(), _params)
@settings(max_examples=150, deadline=None)
def test_cuts_are_fastcdcs(data: bytes, p: CDCParams) -> None:
    assert ContentChunker(p).chunk_bytes(data) == _reference(data, p)


def test_cuts_of_real_files_with_the_default_sizes() -> None:
    """Executables and text from this machine, 24 MiB back to back, with the vault's
    default sizes (256 KiB / 1 MiB / 4 MiB)."""
    data = bytearray()
    for path in sorted(Path("/usr/bin").iterdir()) + sorted(Path("/usr/share/doc").rglob("*")):
        if len(data) >= 24 << 20:
            break
        if path.is_file() and not path.is_symlink():
            data += path.read_bytes()[: 4 << 20]
    p = CDCParams()
    cuts = ContentChunker(p).chunk_bytes(data)
    assert len(cuts) > 10
    assert cuts == _reference(bytes(data), p)


def test_the_scan_lets_other_threads_run() -> None:
    """While one thread scans 256 MiB of zeros as one chunk (one call of either scan), another
    runs Python all along: about 1.5 million steps here, against some 25,000 (a switch interval
    before the scan starts) with fastcdc-py's scan, which holds the GIL."""
    data = bytes(256 << 20)
    p = CDCParams(64, 256 << 20, 1 << 30)  # no cut in zeros: the whole buffer is one chunk
    scanning, done = threading.Event(), threading.Event()
    found: list[list[tuple[int, int]]] = []

    def scan() -> None:
        scanning.set()
        found.append(ContentChunker(p, buffer_size=2 << 30).chunk_bytes(data))
        done.set()

    worker = threading.Thread(target=scan)
    worker.start()
    scanning.wait()
    steps = 0
    while not done.is_set():
        steps += 1
    worker.join()
    assert found == [[(0, len(data))]]
    assert steps > 300_000

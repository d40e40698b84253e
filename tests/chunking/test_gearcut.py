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


@st.composite
def _zero_runs(draw: st.DrawFn) -> bytes:
    """Zero runs of any length and alignment between random, text-like and one-byte pieces:
    the scan steps over blocks of zeros (_gearcut.c), which must never move a cut."""
    parts = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["zeros", "random", "byte", "text"]))
        size = draw(st.integers(0, 300_000))
        if kind == "zeros":
            parts.append(bytes(size))
        elif kind == "random":
            parts.append(seeded_bytes(draw(st.integers(0, 2**32)), size))
        elif kind == "byte":
            parts.append(bytes([draw(st.integers(0, 255))]) * size)
        else:
            parts.append((b"the quick brown fox\n" * (size // 20 + 1))[:size])
    return b"".join(parts)


@given(_zero_runs(), _params)
@settings(max_examples=200, deadline=None)
def test_cuts_around_zero_runs_are_fastcdcs(data: bytes, p: CDCParams) -> None:
    assert ContentChunker(p).chunk_bytes(data) == _reference(data, p)


def test_zero_runs_with_the_default_sizes() -> None:
    """A disk-image-like stream: zero runs of 4 KiB to 16 MiB, unaligned, between random
    data, with the vault's default sizes; long runs are cut at max_size as before."""
    parts, seed = [], 7
    for k in range(40):
        zeros = (4096 << (k % 13)) + k * 513
        parts += [bytes(zeros), seeded_bytes(seed + k, 300_000 + k * 7919)]
    data = b"".join(parts)
    p = CDCParams()
    cuts = ContentChunker(p).chunk_bytes(data)
    assert cuts == _reference(data, p)
    assert sum(1 for _, n in cuts if n == p.max_size) >= 5


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
    """While one thread scans 256 MiB of one byte value as one chunk (one call of either scan),
    another runs Python all along: about 1.5 million steps here, against some 25,000 (a switch
    interval before the scan starts) with fastcdc-py's scan, which holds the GIL.  (Not zeros:
    the scan steps over those.)"""
    data = b"\x01" * (256 << 20)
    p = CDCParams(64, 256 << 20, 1 << 30)  # no cut in this data: the whole buffer is one chunk
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


def _byte_loop(
    data: bytes, sizes: tuple[int, int, int], masks: tuple[int, int], gear: list[int]
) -> list[int]:
    """The algorithm of _gearcut.c's header, byte by byte: the reference for other tables."""
    mi, ma, cs = sizes
    lengths: list[int] = []
    pos = 0
    while pos < len(data):
        size, h, at = len(data) - pos, 0, None
        i = min(mi, size)
        for barrier, mask in ((min(cs, size), masks[0]), (min(ma, size), masks[1])):
            while at is None and i < barrier:
                h = ((h >> 1) + gear[data[pos + i]]) & 0xFFFFFFFF
                i += 1
                if not h & mask:
                    at = i
        lengths.append(i if at is None else at)
        pos += lengths[-1]
    return lengths


@given(_zero_runs())
@settings(max_examples=60, deadline=None)
def test_zero_blocks_are_hashed_where_the_mask_would_cut_there(data: bytes) -> None:
    """A table whose zero fixed point (0x40000001 here) passes the centre mask but fails the
    loose one: zeros at it never cut before the centre size and always cut right after it, so
    stepping over zero blocks must depend on the mask in force (_gearcut.c ``scan``)."""
    gearcut = cdc._gearcut
    assert gearcut is not None
    gear = [int.from_bytes(seeded_bytes(b, 4), "little") for b in range(256)]
    gear[0] = 0x20000001
    sizes, masks = (64, 1024, 256), (0x4000FFFE, 0x0000FFFE)
    data = data[:60_000]
    try:
        gearcut.set_gear(gear)
        found = gearcut.cuts(data, sizes[0], sizes[1], sizes[2], *masks)
    finally:
        gearcut.set_gear(cdc._gear_table())
    assert found == _byte_loop(data, sizes, masks, gear)

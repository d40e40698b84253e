"""A chunk's compression: the probe that skips zstd on data that will not shrink."""

from __future__ import annotations

import os
import random
import threading

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.vault import compress
from strongroom.vault.compress import MAX_RATIO, PROBE_MIN, SAMPLE, SAMPLES, ChunkCompressor

MiB = 1 << 20
TEXT = b"".join(b"line %d of a log that compresses well\n" % i for i in range(40000))


class _Counting:
    """A zstd context that records how many bytes each call was given."""

    def __init__(self, inner: zstandard.ZstdCompressor) -> None:
        self.inner, self.sizes = inner, list[int]()

    def compress(self, data: bytes) -> bytes:
        self.sizes.append(len(data))
        return self.inner.compress(data)


def _counting(c: ChunkCompressor) -> _Counting:
    spy = _Counting(c._context())
    c._local.cctx = spy
    return spy


def _roundtrip(data: bytes, packed: bytes | None) -> None:
    if packed is not None:
        assert zstandard.ZstdDecompressor().decompress(packed) == data
        assert len(packed) < len(data) * MAX_RATIO


def test_random_chunk_is_stored_raw_after_compressing_only_its_sample() -> None:
    c = ChunkCompressor(2)
    spy = _counting(c)
    assert c.compress(os.urandom(MiB)) is None
    assert spy.sizes == [SAMPLE * SAMPLES]  # the 1 MiB itself never went through zstd


def test_text_chunk_is_compressed_whole() -> None:
    c = ChunkCompressor(2)
    spy = _counting(c)
    data = TEXT[:MiB]
    packed = c.compress(data)
    assert packed is not None and len(packed) < len(data) // 10
    _roundtrip(data, packed)
    assert spy.sizes == [SAMPLE * SAMPLES, MiB]


def test_one_compressible_piece_in_the_sample_compresses_the_chunk() -> None:
    # random everywhere but the last 4 KiB, which only the last sampled piece sees: zeros
    data = os.urandom(MiB - SAMPLE) + bytes(SAMPLE)
    spy = _counting(c := ChunkCompressor(1))
    assert c.compress(data) is None  # 0.4 % zeros: not worth storing compressed
    assert spy.sizes == [SAMPLE * SAMPLES, MiB]  # but the probe let zstd decide


def test_mixture_in_4k_pages_is_compressed() -> None:
    rng = random.Random(7)
    pages = [os.urandom(4096) if rng.random() < 0.5 else TEXT[:4096] for _ in range(256)]
    data = b"".join(pages)
    packed = ChunkCompressor(2).compress(data)
    assert packed is not None
    _roundtrip(data, packed)


def test_small_chunks_skip_the_probe() -> None:
    c = ChunkCompressor(2)
    spy = _counting(c)
    assert c.compress(os.urandom(PROBE_MIN - 1)) is None
    assert spy.sizes == [PROBE_MIN - 1]
    packed = c.compress(TEXT[:1000])
    assert packed is not None and spy.sizes[-1] == 1000


def test_sample_spans_the_chunk_from_start_to_end() -> None:
    n = PROBE_MIN + 12345
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    sample = compress._sample(memoryview(data), n)
    assert len(sample) == SAMPLE * SAMPLES
    assert sample[:SAMPLE] == data[:SAMPLE] and sample[-SAMPLE:] == data[-SAMPLE:]


def test_each_thread_has_its_own_context() -> None:
    c = ChunkCompressor(2)
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(c._context()))
    t.start()
    t.join()
    assert seen[0] is not c._context() and c._context() is c._context()


_pieces = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=8192),
        st.integers(1, 65536).map(bytes),  # zeros
        st.integers(1, 65536).map(os.urandom),
        st.integers(1, 65536).map(lambda n: TEXT[:n]),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_pieces, st.sampled_from([1, 2, 3]))
def test_result_is_raw_or_a_smaller_frame_of_the_same(pieces: list[bytes], level: int) -> None:
    data = b"".join(pieces)
    packed = ChunkCompressor(level).compress(data)
    _roundtrip(data, packed)
    whole = zstandard.ZstdCompressor(level=level).compress(data)
    if len(data) < PROBE_MIN:  # no probe: exactly the old rule
        assert (packed is None) == (len(whole) >= len(data) * MAX_RATIO)

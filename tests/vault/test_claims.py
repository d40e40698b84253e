"""Chunk claims (vault/claims.py, _claims.c): the first claim of an id wins, once, across
processes racing on the same ids; later segments when one fills; a full table lets every
writer store; and a writer with claims stores only what it claimed."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.storage.local import LocalBackend
from strongroom.vault import ChunkClaims, Vault, _claims
from tests.constants import FAST_KDF

MINE, OTHER, FULL = 1, 0, -1


def _small_table(segments: int = 1) -> bytearray:
    return bytearray(_claims.MIN_BYTES + (segments - 1) * _claims.SEGMENT_SLOTS * 8)


def _tag(cid: bytes) -> bytes:
    """What a claim is made on: the first 8 bytes, zero taken as one (0 marks an empty slot)."""
    head = cid[:8]
    return (1).to_bytes(8, "little") if head == bytes(8) else head


# ids that often share their first 8 bytes, among them the two that share a tag
_ids = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from([bytes(8), (1).to_bytes(8, "little"), b"abcdefgh", b"\xff" * 8]),
    st.binary(min_size=24, max_size=24),
) | st.binary(min_size=32, max_size=32)


@given(st.lists(_ids, max_size=200))
@settings(max_examples=200, deadline=None)
def test_only_the_first_claim_of_a_tag_is_mine(ids: list[bytes]) -> None:
    table = _small_table(2)
    seen: set[bytes] = set()
    for cid in ids:
        want = OTHER if _tag(cid) in seen else MINE
        assert _claims.claim(table, cid) == want
        seen.add(_tag(cid))


def test_segments_fill_one_after_the_other_and_then_the_table_is_full() -> None:
    rng = random.Random(25)
    table = _small_table(3)
    ids = [rng.randbytes(32) for _ in range(3 * _claims.SEGMENT_SLOTS)]
    got = [_claims.claim(table, cid) for cid in ids]
    assert _claims.segments_used(table) == 3
    first_full = got.index(FULL)
    assert first_full > 2.4 * _claims.SEGMENT_SLOTS  # segments are used to some 85 %
    assert set(got[:first_full]) == {MINE}
    # every id claimed before is found again, in whichever segment it went
    assert {_claims.claim(table, cid) for cid in ids[:first_full]} == {OTHER}


def test_the_python_side_says_store_when_the_table_is_full() -> None:
    table = ChunkClaims.create()
    assert table is not None
    try:
        assert table.claim(b"x" * 32) and not table.claim(b"x" * 32)
        assert table.segments_used() == 1
    finally:
        table.close()
    assert _claims.claim(_small_table(), b"y" * 32) == MINE
    full = _small_table()
    rng = random.Random(7)
    while _claims.claim(full, rng.randbytes(32)) != FULL:
        pass


_RACER = textwrap.dedent(
    """
    import sys
    from strongroom.vault import ChunkClaims
    claims = ChunkClaims.attach(int(sys.argv[1]))
    ids = open(sys.argv[2], "rb").read()
    mine = bytearray(claims.claim(ids[i:i + 32]) for i in range(0, len(ids), 32))
    sys.stdout.buffer.write(bytes(mine))
    """
)


def test_processes_racing_on_the_same_ids_claim_each_once(tmp_path: Path) -> None:
    """Three processes claim the same 40,000 ids (each in its own order, so they collide all
    the time): every id is claimed by exactly one of them."""
    rng = random.Random(19)
    ids = [rng.randbytes(32) for _ in range(40_000)]
    claims = ChunkClaims.create()
    assert claims is not None
    try:
        racers = []
        for n in range(3):
            order = ids[:]
            random.Random(n).shuffle(order)
            path = tmp_path / f"ids{n}"
            path.write_bytes(b"".join(order))
            proc = subprocess.Popen(
                [sys.executable, "-c", _RACER, str(claims.fd), str(path)],
                pass_fds=(claims.fd,),
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
            racers.append((order, proc))
        wins: dict[bytes, int] = dict.fromkeys(ids, 0)
        for order, proc in racers:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0 and len(out) == len(order)
            for cid, won in zip(order, out, strict=True):
                wins[cid] += won
        assert set(wins.values()) == {1}
    finally:
        claims.close()


def test_a_writer_stores_only_what_it_claimed(tmp_path: Path) -> None:
    """Two writers of one vault with one table (as two processes of a backup have): what the
    first stored, the second borrows and notes; together they stored each chunk once."""
    vault = Vault.init(LocalBackend(tmp_path / "v"), "pw", kdf=FAST_KDF)
    claims = ChunkClaims.create()
    assert claims is not None
    try:
        first, second = vault.writer(claims=claims), vault.writer(claims=claims)
        shared = [b"shared %d" % i for i in range(50)]
        assert all(first.put(data).new for data in shared)
        got = [second.put(data) for data in [*shared, b"only the second's"]]
        assert [r.new for r in got] == [False] * 50 + [True]
        assert second.borrowed == [r.chunk_id for r in got[:50]] and first.borrowed == []
        first.flush()
        second.flush()
        assert vault.missing_chunks(second.borrowed) == set()
        ids = [cid for cid, _ in vault.index.iter_entries()]
        assert len(ids) == len(set(ids)) == 51
        first.close()
        second.close()
    finally:
        claims.close()

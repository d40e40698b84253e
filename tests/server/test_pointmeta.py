"""The catalog's mirror of points' plain facts: what a put's header may say, and the mirror
kept per source (SQLite here; the PostgreSQL catalog runs the same statements)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.server import pointmeta
from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog
from strongroom.vault.points import PointManifest

PID = "ab" * 32


def _header(doc: object) -> str:
    return quote(json.dumps(doc), safe="")


def test_a_manifest_sends_its_plain_facts_and_the_server_keeps_them(tmp_path: Path) -> None:
    manifest = PointManifest(
        kind="files",
        source="web",
        roots=["00" * 32],
        consistency="per-file",
        tags=["nightly"],
        summary={"bytes_added": 4096, "data_added": 9000, "logical_bytes": 20000},
        meta={"paths": ["/secret/path"]},
    )
    facts = manifest.plain_facts()
    # no roots, no paths; the chunk writer's counts: stored and raw bytes added, logical size
    assert set(facts) == {"kind", "time", "consistency", "tags", "added", "raw", "logical"}
    assert (facts["added"], facts["raw"], facts["logical"]) == (4096, 9000, 20000)
    catalog = Catalog(tmp_path, create=True)
    try:
        pointmeta.record(catalog, "v", pointmeta.parse(PID, "web", _header(facts)))
        pointmeta.record(catalog, "v", pointmeta.parse(PID, "web", _header(facts)))  # idempotent
        mirrored = pointmeta.of_source(catalog, "v", "web")
        assert mirrored == {PID: facts}
        assert pointmeta.of_source(catalog, "v", "db") == {}
    finally:
        catalog.close()


@pytest.mark.parametrize(
    "header",
    [
        "%7B",  # not JSON
        _header([1, 2]),
        _header({"kind": "tape", "time": "t", "consistency": "c"}),
        _header({"kind": "files", "time": "t", "consistency": "c", "tags": "a"}),
        _header({"kind": "files", "time": "t", "consistency": "c", "added": -1}),
        _header({"kind": "files", "time": 5, "consistency": "c"}),
        _header({"kind": "files", "time": "t", "consistency": "c", "raw": 2**63}),
        _header({"kind": "files", "time": "t", "consistency": "c", "logical": 1.5}),
        _header({"kind": "files", "time": "t", "consistency": "c", "raw": True}),
        _header({"kind": "files", "time": "t", "consistency": "c", "logical": "9"}),
        "%ff%fe",  # not UTF-8
    ],
)
def test_a_bad_facts_header_is_refused(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        pointmeta.parse(PID, "web", header)
    assert caught.value.status == 400
    assert "\n" not in caught.value.reason


def test_an_image_point_sends_stored_raw_and_data_bytes() -> None:
    summary = {"bytes_new": 8000, "bytes_stored": 3000, "data_bytes": 50000, "logical_bytes": 9}
    facts = PointManifest(kind="vm", source="vm1", roots=["00" * 32], summary=summary)
    assert (facts.plain_facts()["added"], facts.plain_facts()["raw"]) == (3000, 8000)
    assert facts.plain_facts()["logical"] == 50000  # the disks' data, not their virtual size
    old = PointManifest(kind="vm", source="vm1", roots=["00" * 32], summary={"bytes_new": 8})
    assert old.plain_facts()["raw"] is None  # no stored count: no compression to tell


_COUNT = st.one_of(
    st.none(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=5),
)


@given(added=_COUNT, raw=_COUNT, logical=_COUNT)
@settings(max_examples=150, deadline=None)
def test_byte_counts_are_whole_bounded_numbers_or_refused(
    added: object, raw: object, logical: object
) -> None:
    doc = {"kind": "disk", "time": "t", "consistency": "c", "added": added, "raw": raw}
    doc["logical"] = logical
    good = all(
        n is None or (type(n) is int and 0 <= n <= pointmeta.MAX_COUNT)
        for n in (added, raw, logical)
    )
    try:
        facts = pointmeta.parse(PID, "web", _header(doc))
    except ApiError as exc:
        assert not good and exc.status == 400
    else:
        assert good and (facts.added, facts.raw, facts.logical) == (added, raw, logical)

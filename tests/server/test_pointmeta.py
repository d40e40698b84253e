"""The catalog's mirror of points' plain facts: what a put's header may say, and the mirror
kept per source (SQLite here; the PostgreSQL catalog runs the same statements)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

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
        summary={"bytes_added": 4096},
        meta={"paths": ["/secret/path"]},
    )
    facts = manifest.plain_facts()
    assert set(facts) == {"kind", "time", "consistency", "tags", "added"}  # no roots, no paths
    catalog = Catalog(tmp_path, create=True)
    try:
        pointmeta.record(catalog, "v", pointmeta.parse(PID, "web", _header(facts)))
        pointmeta.record(catalog, "v", pointmeta.parse(PID, "web", _header(facts)))  # idempotent
        mirrored = pointmeta.of_source(catalog, "v", "web")
        assert mirrored == {PID: {**facts, "added": 4096}}
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
        "%ff%fe",  # not UTF-8
    ],
)
def test_a_bad_facts_header_is_refused(header: str) -> None:
    with pytest.raises(ApiError) as caught:
        pointmeta.parse(PID, "web", header)
    assert caught.value.status == 400
    assert "\n" not in caught.value.reason

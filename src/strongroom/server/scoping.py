"""Source scoping: what a token created with ``--source NAME`` may see and write.

The server cannot decrypt a recovery point, so it learns a point's source from the client: a
put of ``points/<id>`` names its source in the ``X-Strongroom-Source`` header, the server checks
it against the token's sources and records it (a mirror of the point's metadata).  Packs and
index objects are recorded with the uploading token's sources.  A scoped token then sees:

- points whose recorded source is one of its sources, and their tombstones;
- packs and index objects uploaded under one of its sources, so its client's index holds only
  chunks it may read: a scoped backup deduplicates within its own sources, and every chunk
  its parent points need is either readable or, being absent from its index, stored again;
- ``config``, key slots and locks (every client needs them).

Packs and index objects written by prune's repack are recorded with the sources their
client names (maintenance and admin tokens only): the sources the server lists for the packs
their chunks came from, grouped so that a new pack serves the same sources as its old ones.
Objects nobody recorded (written by an unscoped token, or before scoping existed) are for
unscoped tokens only.  A point's recorded source is returned with every read
and listing of it, and clients skip a point whose decrypted manifest names another source.
"""

from __future__ import annotations

from strongroom.server.auth import ApiError
from strongroom.server.catalog import Catalog, TokenRow
from strongroom.storage.backend import ObjectInfo

SCOPED_KINDS = ("data", "index", "points", "deleted")
SCOPED_ROLES = ("backup", "restore")
MAX_SOURCE = 256


def check_sources(role: str, sources: list[str]) -> list[str]:
    """The sources of a new token: only backup and restore tokens are scoped."""
    if sources and role not in SCOPED_ROLES:
        raise ApiError(400, f"--source applies to backup and restore tokens, not {role}")
    for s in sources:
        if not s or len(s) > MAX_SOURCE or not s.isprintable():
            raise ApiError(400, f"invalid source name {s!r}")
    return sorted(set(sources))


def _point_name(name: str) -> str:
    """The point an object is about: itself, or the point a tombstone hides."""
    return "points/" + name.rpartition("/")[2] if name.startswith("deleted/") else name


class Scope:
    """The recorded sources of one vault's objects and the rules over them."""

    def __init__(self, vault: str, catalog: Catalog) -> None:
        self.vault, self.catalog = vault, catalog

    def point_source(self, name: str) -> str | None:
        found = self.catalog.sources_of(self.vault, _point_name(name))
        return found[0] if found else None

    def check_read(self, token: TokenRow, kind: str, name: str) -> None:
        if not token.sources or kind not in SCOPED_KINDS:
            return
        recorded = self.catalog.sources_of(self.vault, _point_name(name))
        if not set(recorded) & set(token.sources):
            what = "points" if kind in ("points", "deleted") else f"{kind} objects"
            raise ApiError(403, f"this token may not read {what} of other sources", "forbidden")

    def visible(
        self, token: TokenRow, infos: list[ObjectInfo]
    ) -> list[tuple[ObjectInfo, str | None, list[str]]]:
        """The listing as the token may see it, with each point's recorded source and, for
        an unscoped token, the recorded sources of packs and index objects (prune's repack
        names them again for the packs it writes)."""
        recorded: dict[str, dict[str, list[str]]] = {}  # per folder, loaded when first needed

        def sources(name: str) -> list[str]:
            key = _point_name(name)
            folder = key.partition("/")[0] + "/"
            if folder not in recorded:
                recorded[folder] = self.catalog.sources_under(self.vault, folder)
            return recorded[folder].get(key, [])

        mine = set(token.sources)
        shown: list[tuple[ObjectInfo, str | None, list[str]]] = []
        for info in infos:
            folder = info.name.partition("/")[0]
            if mine and folder in SCOPED_KINDS and not mine & set(sources(info.name)):
                continue
            found = sources(info.name) if folder == "points" else []
            packs = sources(info.name) if not mine and folder in ("data", "index") else []
            shown.append((info, found[0] if found else None, packs))
        return shown

    def check_point_put(self, token: TokenRow, name: str, source: str | None) -> str:
        """The source a point is committed for: named by the client, one of the token's."""
        if source is None:
            raise ApiError(400, f"{name}: name the point's source (X-Strongroom-Source header)")
        if not source or len(source) > MAX_SOURCE:
            raise ApiError(400, f"{name}: invalid source name {source!r}")
        if token.sources and source not in token.sources:
            allowed = ", ".join(token.sources)
            raise ApiError(
                403,
                f"this token commits points of {allowed} only, not of source {source!r}",
                "forbidden",
            )
        recorded = self.point_source(name)
        if recorded is not None and recorded != source:
            raise ApiError(409, f"{name} is recorded for source {recorded!r}", "exists")
        return source

    def check_named(self, token: TokenRow, kind: str, named: list[str]) -> list[str]:
        """The sources a maintenance client names for a pack or index object it writes
        (prune's repack: the sources of the packs the chunks came from)."""
        if not named:
            return []
        if kind not in ("data", "index"):
            raise ApiError(400, f"{kind} objects are not stored for named sources")
        if token.role not in ("maintenance", "admin"):
            raise ApiError(
                403, f"a {token.role} token cannot name the sources of what it stores", "forbidden"
            )
        return check_sources("backup", named)

    def record(
        self, token: TokenRow, kind: str, name: str, source: str | None, named: list[str]
    ) -> None:
        """Remember whom a new object belongs to."""
        if kind == "points" and source is not None:
            self.catalog.add_sources(self.vault, name, [source])
        elif kind in ("data", "index") and (token.sources or named):
            self.catalog.add_sources(self.vault, name, sorted({*token.sources, *named}))

    def forget(self, kind: str, name: str) -> None:
        if kind in ("data", "index", "points"):
            self.catalog.drop_sources(self.vault, name)

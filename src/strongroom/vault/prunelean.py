"""Prune on a full disk: free space while writing at most one index object at a time.

The normal prune writes every new pack and the whole new index before it deletes anything,
which needs free space in proportion to the vault.  The lean pass (``docs/architecture.md``,
"Read-only and full vaults") repacks nothing and goes index object by index object: an
object that lists packs to delete is replaced by one listing the same records without them
(``supersedes`` naming the old one), the old object is deleted, and then every dead pack no
remaining index object lists.  Each step frees at least what it wrote (the new object is
smaller than the old one, and the packs go too), so the space one index object needs, which
the reserve holds (``storage/reserve.py``), is enough for all of them.  Objects whose packs
are all dead come first: they need no write at all.

The commit order is the normal one (an object that still lists live packs is durable before
the one it replaces goes; a pack goes only once no index object lists it), so a crash leaves
at worst redundant index objects (``check`` warns about superseded ones) or unindexed packs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial

from strongroom.storage.reserve import with_reserve
from strongroom.storage.served import listed_sources, storing_for
from strongroom.vault.index import PackRecord, decode_index, encode_index
from strongroom.vault.pack import pack_name
from strongroom.vault.vault import Vault
from strongroom.vault.writer import write_index_object

__all__ = ["drop_dead_packs"]

Delete = Callable[[str], None]


def _records(vault: Vault, name: str) -> list[PackRecord]:
    return decode_index(vault.open_index_object(name), name)[0]


def _plan(
    vault: Vault, names: list[str], dead: set[bytes]
) -> tuple[list[str], dict[str, set[bytes]], Counter[bytes]]:
    """The index objects to replace (wholly dead ones first), the dead packs each lists, and
    how many of them list each dead pack."""
    hits: dict[str, set[bytes]] = {}
    whole: dict[str, bool] = {}
    holders: Counter[bytes] = Counter()
    for name in names:
        packs = {rec.pack_id for rec in _records(vault, name)}
        if packs & dead:
            hits[name] = packs & dead
            whole[name] = packs <= dead
            holders.update(hits[name])
    order = sorted(hits, key=lambda n: (not whole[n], n))
    return order, hits, holders


def drop_dead_packs(
    vault: Vault, names: list[str], dead: set[bytes], delete: Delete, spared: set[str]
) -> tuple[int, int]:
    """Replace the index objects ``names`` that list ``dead`` packs and delete those packs
    (except ``spared`` pack ids in hex, named by index objects that appeared meanwhile).
    Returns (index objects written, packs deleted)."""
    order, hits, holders = _plan(vault, names, dead)
    written = deleted = 0
    for name in order:
        keep = [rec for rec in _records(vault, name) if rec.pack_id not in dead]
        if keep:
            plain = encode_index(keep, [bytes.fromhex(name.rsplit("/", 1)[-1])])
            write = partial(write_index_object, vault.backend, vault.keys, vault.vault_id, plain)
            with storing_for(listed_sources(vault.backend, name)):  # a served vault's scoping
                vault.index_names.add(with_reserve(vault.backend, write))
            written += 1
        delete(name)
        vault.index_names.discard(name)
        for pack_id in sorted(hits[name]):
            holders[pack_id] -= 1
            if holders[pack_id] == 0 and pack_id.hex() not in spared:
                delete(pack_name(pack_id))
                deleted += 1
    return written, deleted

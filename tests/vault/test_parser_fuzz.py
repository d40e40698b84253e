"""Random and mutated bytes into every parser of vault objects: only a clean StrongroomError may
come out, never another exception.  Sealed objects are also fuzzed behind their seal (the
mutated plaintext sealed with the right key), which is what a buggy or hostile key holder
could write."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strongroom.errors import StrongroomError
from strongroom.storage import MemoryBackend
from strongroom.vault import Vault
from strongroom.vault.config import CONFIG_NAME, parse_config, verify_config_mac
from strongroom.vault.envelope import (
    MAGIC_DELETED,
    MAGIC_INDEX,
    MAGIC_LOCK,
    MAGIC_POINT,
    open_object,
    seal_object,
)
from strongroom.vault.index import decode_index
from strongroom.vault.keys import KEYS_PREFIX, parse_slot, unwrap
from strongroom.vault.locks import LockCodec
from strongroom.vault.pack import read_pack_header
from strongroom.vault.points import decode_manifest
from strongroom.vault.tombstones import open_tombstone
from strongroom.vault.trees import decode_tree, tree_ref_array
from tests.conftest import FAST_KDF, PASSPHRASE
from tests.vault.helpers import random_chunks, write_point

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def sample() -> tuple[Vault, dict[str, bytes]]:
    """A small vault and one stored object (or plaintext) of every kind."""
    vault = Vault.init(MemoryBackend(), PASSPHRASE, kdf=FAST_KDF)
    w = write_point(vault, random_chunks(1, 3, 2048))
    b = vault.backend
    from strongroom.vault.forget import soft_delete

    stone = soft_delete(vault, w.point, "fuzz")
    keys = vault.keys

    def first(prefix: str) -> tuple[str, bytes]:
        name = next(iter(b.list(prefix))).name
        return name, b.get(name)

    index_name, index = first("index/")
    point_name, point = first("points/")
    slot_name, slot = first(KEYS_PREFIX)
    _, pack = first("data/")
    root = bytes.fromhex(w.point.manifest.roots[0])
    objects = {
        "config": b.get(CONFIG_NAME),
        "slot": slot,
        "index": index,
        "index-plain": open_object(MAGIC_INDEX, keys.index_key, vault.vault_id, index, name="i"),
        "point": point,
        "point-plain": open_object(MAGIC_POINT, keys.point_key, vault.vault_id, point, name="p"),
        "tombstone": b.get(stone.name),
        "tombstone-plain": json.dumps(
            {k: getattr(stone, k) for k in ("point", "deleted_at", "purge_after")}
            | {"host": "h", "user": "u", "reason": "r"}
        ).encode(),
        "lock": bytes(LockCodec(keys.lock_key, vault.vault_id).encode(False)),
        "lock-plain": b'{"exclusive": false, "host": "h", "pid": 1, "time": 1.5}',
        "pack": pack,
        "tree": vault.read_chunk(root),
    }
    objects["_names"] = "\n".join([index_name, point_name, slot_name, stone.name]).encode()
    return vault, objects


def _names() -> list[str]:
    return sample()[1]["_names"].decode().split("\n")


def parse(kind: str, data: bytes) -> None:
    """Feed ``data`` to the parser (and opener) of ``kind``."""
    vault, _ = sample()
    keys, vid = vault.keys, vault.vault_id
    index_name, point_name, slot_name, stone_name = _names()
    if kind == "config":
        config, doc = parse_config(data, "fuzz")
        verify_config_mac(doc, data, keys)
        _ = (config.settings.pack_size, config.vault_id)
    elif kind == "slot":
        slot_id = slot_name.rsplit("/", 1)[-1]
        slot, _doc = parse_slot(slot_id, data)
        if slot.kdf.memory_kib <= 4096 and slot.kdf.time_cost <= 4:  # keep each example fast
            unwrap(slot_id, data, PASSPHRASE, vid)
    elif kind == "index":
        decode_index(open_object(MAGIC_INDEX, keys.index_key, vid, data, name=index_name), "i")
    elif kind == "index-plain":
        decode_index(data, index_name)
    elif kind == "point":
        opened = open_object(MAGIC_POINT, keys.point_key, vid, data, name=point_name)
        decode_manifest(opened, point_name)
    elif kind == "point-plain":
        _ = decode_manifest(data, point_name).timestamp
    elif kind == "tombstone":
        open_tombstone(keys, vid, stone_name, data).expired()
    elif kind == "tombstone-plain":
        sealed = seal_object(MAGIC_DELETED, keys.point_key, vid, data)
        open_tombstone(keys, vid, stone_name, sealed).expired()
    elif kind == "lock":
        LockCodec(keys.lock_key, vid).decode("locks/x", data).is_stale(0.0)
    elif kind == "lock-plain":
        sealed = seal_object(MAGIC_LOCK, keys.lock_key, vid, data)
        LockCodec(keys.lock_key, vid).decode("locks/x", sealed).is_stale(0.0)
    elif kind == "pack":
        read_pack_header(keys, data, "data/xx/fuzz")
    elif kind == "tree":
        decode_tree(data)
        tree_ref_array(data)
    else:
        raise AssertionError(kind)


KINDS = [
    "config",
    "slot",
    "index",
    "index-plain",
    "point",
    "point-plain",
    "tombstone",
    "tombstone-plain",
    "lock",
    "lock-plain",
    "pack",
    "tree",
]


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """The valid object with bit flips, a truncation or an extension; or random bytes."""
    original = sample()[1][kind]
    how = draw(st.sampled_from(["flip", "truncate", "extend", "random", "splice"]))
    data = bytearray(original)
    if how == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
    elif how == "truncate":
        del data[draw(st.integers(0, len(data))) :]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    elif how == "splice" and data:
        pos = draw(st.integers(0, len(data) - 1))
        data[pos : pos + draw(st.integers(0, 8))] = draw(st.binary(max_size=16))
    else:
        data = bytearray(draw(st.binary(max_size=512)))
    return bytes(data)


def _clean(fn: Callable[[], None]) -> None:
    with contextlib.suppress(StrongroomError):
        fn()


@pytest.mark.parametrize("kind", KINDS)
def test_valid_samples_parse(kind: str) -> None:
    parse(kind, sample()[1][kind])


@pytest.mark.parametrize("kind", KINDS)
@FUZZ
@given(data=st.data())
def test_mutated_objects_fail_cleanly(kind: str, data: st.DataObject) -> None:
    blob = data.draw(mutated(kind))
    _clean(lambda: parse(kind, blob))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@pytest.mark.parametrize("kind", ["config", "slot", "point-plain", "tombstone-plain", "lock-plain"])
@FUZZ
@given(data=st.data())
def test_json_objects_with_wrong_types_fail_cleanly(kind: str, data: st.DataObject) -> None:
    """Each field of a JSON object replaced by a value of any type (or removed)."""
    doc = json.loads(sample()[1][kind])
    key = data.draw(st.sampled_from(sorted(doc)))
    if data.draw(st.booleans()):
        doc[key] = data.draw(JSON_VALUES)
    else:
        del doc[key]
    if kind == "config":
        blob = json.dumps(doc, indent=1, sort_keys=True).encode()
    elif kind == "slot":
        if isinstance(doc.get("kdf"), dict) and data.draw(st.booleans()):
            sub = data.draw(st.sampled_from(sorted(doc["kdf"]) or ["x"]))
            doc["kdf"][sub] = data.draw(JSON_VALUES)
        blob = json.dumps(doc, indent=1, sort_keys=True).encode()
    else:
        blob = json.dumps(doc).encode()
    _clean(lambda: parse(kind, blob))

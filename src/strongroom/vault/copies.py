"""Checking and repairing the redundant copies of ``config`` and the key slots.

``config`` is also stored as ``config-copy`` and every ``keys/<id>`` as ``keys-copy/<id>``
(``docs/format.md`` §3, §4), so one damaged byte never locks the owner out.  Opening falls
back to a good copy; ``check`` reports every missing, damaged or differing copy, and
``check --repair`` rewrites each from the copy that verifies, primary first.
"""

from __future__ import annotations

from collections.abc import Callable

from strongroom.errors import IntegrityError, NotAVault, ObjectNotFound
from strongroom.records import dataclass
from strongroom.vault.config import (
    CONFIG_COPY_NAME,
    CONFIG_NAME,
    choose_config,
    read_configs,
    verify_config_mac,
)
from strongroom.vault.keys import (
    KEYS_COPY_PREFIX,
    KEYS_PREFIX,
    parse_slot,
    slot_ids,
)
from strongroom.vault.vault import Vault

Note = Callable[[str, str], None]
"""``note(name, message)``: a problem (error or warning) found about the object ``name``."""


@dataclass(frozen=True)
class _Stored:
    name: str
    data: bytes | None  # None: missing
    problem: str | None  # why it does not verify, None if it does


def _quiet(_: str) -> None:
    """Opening already warned about the copy in use."""


def _config_copies(vault: Vault) -> tuple[bytes | None, list[_Stored]]:
    """The verified config bytes this vault uses, and how each stored copy fares."""
    try:
        found, _ = read_configs(vault.backend)
        good = choose_config(found, vault.vault_id, vault.keys, _quiet).stored
    except (IntegrityError, NotAVault):
        good = None
    out = []
    for name in (CONFIG_NAME, CONFIG_COPY_NAME):
        try:
            data: bytes | None = vault.backend.get(name)
        except ObjectNotFound:
            data = None
        out.append(_Stored(name, data, _config_problem(vault, data)))
    return good, out


def _config_problem(vault: Vault, data: bytes | None) -> str | None:
    from strongroom.vault.config import parse_config

    if data is None:
        return "missing"
    try:
        config, doc = parse_config(data, "config")
        if config.vault_id != vault.vault_id:
            return "belongs to another vault"
        verify_config_mac(doc, data, vault.keys)
    except (IntegrityError, NotAVault) as exc:
        return str(exc)
    return None


def _slot_copies(vault: Vault, slot_id: str) -> list[_Stored]:
    out = []
    for prefix in (KEYS_PREFIX, KEYS_COPY_PREFIX):
        name = prefix + slot_id
        try:
            data = vault.backend.get(name)
        except ObjectNotFound:
            out.append(_Stored(name, None, "missing"))
            continue
        try:
            parse_slot(slot_id, data, name)
        except IntegrityError as exc:
            out.append(_Stored(name, data, str(exc)))
            continue
        out.append(_Stored(name, data, None))
    return out


def check_copies(vault: Vault, error: Note, warn: Note) -> None:
    """Report config and key slot copies that are missing, damaged or differ."""
    good, copies = _config_copies(vault)
    _judge(copies, good, error, warn)
    for slot_id in slot_ids(vault.backend):
        copies = _slot_copies(vault, slot_id)
        known = vault.slot_stored if slot_id == vault.slot_id else None
        _judge(copies, known or _only_good(copies), error, warn)


def _only_good(copies: list[_Stored]) -> bytes | None:
    good = {c.data for c in copies if c.problem is None and c.data is not None}
    return good.pop() if len(good) == 1 else None


def _judge(copies: list[_Stored], good: bytes | None, error: Note, warn: Note) -> None:
    primary, copy = copies
    fix = " (`strongroom check --repair` restores it)" if good is not None else ""
    for c in copies:
        if c.problem == "missing":
            # vaults made before copies existed have none: a missing copy is only a warning
            (warn if c is copy and primary.problem is None else error)(c.name, f"missing{fix}")
        elif c.problem is not None:
            error(c.name, f"{c.problem}{fix}")
    if primary.problem is None and copy.problem is None and primary.data != copy.data:
        stale = copy if good == primary.data else primary
        error(stale.name, f"differs from its other copy{fix}")


def repair_copies(vault: Vault, note: Callable[[str], None]) -> None:
    """Rewrite every config and key slot copy that is missing, damaged or differs from the
    copy known to be good (primary first); say what cannot be told apart."""
    good, copies = _config_copies(vault)
    _rewrite(vault, copies, good, note)
    for slot_id in slot_ids(vault.backend):
        copies = _slot_copies(vault, slot_id)
        known = vault.slot_stored if slot_id == vault.slot_id else None
        good = known or _only_good(copies)
        if good is None:
            note(
                f"{KEYS_PREFIX}{slot_id}: its copies differ and both parse; only that slot's "
                "passphrase tells which is good: open with it and run check --repair again"
            )
            continue
        _rewrite(vault, copies, good, note)


def _rewrite(
    vault: Vault, copies: list[_Stored], good: bytes | None, note: Callable[[str], None]
) -> None:
    if good is None:
        return
    for c in copies:
        if c.data != good:
            vault.backend.put(c.name, good)
            what = "wrote the missing" if c.data is None else "restored"
            note(f"{what} {c.name} from its good copy")

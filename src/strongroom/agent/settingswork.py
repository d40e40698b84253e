"""The agent's side of a settings change asked for on the dashboard (``docs/server.md``).

The server cannot sign a vault's ``config`` (it holds no key), so it asks an agent that does
for the current config with new soft-delete or immutability days and the MAC over them.  The
agent only signs: the server checks the answer changes nothing else, and decides, as for
``strongroom settings``, whether it is stored now or waits for a second admin.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from strongroom.errors import StrongroomError

if TYPE_CHECKING:
    from strongroom.vault import Vault

PROTECTIONS = ("soft_delete_days", "immutable_days")
MAX_DAYS = 36_500


class SettingsRequestError(StrongroomError):
    """The server asked for settings that cannot be signed."""


def signed_settings(v: Vault, doc: dict[str, Any]) -> bytes:
    """The vault's current config with the requested days, serialized with its MAC."""
    changes: dict[str, Any] = {}
    for key in PROTECTIONS:
        value = doc.get(key)
        if value is None:
            continue
        if type(value) is not int or not 0 <= value <= MAX_DAYS:
            raise SettingsRequestError(f"{key} must be 0 to {MAX_DAYS} days, not {value!r}")
        changes[key] = value
    if not changes:
        raise SettingsRequestError("a settings request without soft_delete_days or immutable_days")
    current = v.refresh_config()
    return current.with_settings(replace(current.settings, **changes)).serialize(v.keys)

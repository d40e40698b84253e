"""Key files: a random 256-bit secret that opens one key slot, for unattended hosts.

A passphrase is stretched with Argon2id (32 MiB, 4 passes) because a person chose it and it
can be guessed.  A key file's secret is 32 random bytes: no guessing reaches it, so stretching
adds nothing but cost to every command (about 0.11 CPU seconds and 32 MiB of memory here,
issue 19).  Its slot is an ordinary slot (``docs/format.md`` §4) whose Argon2id cost is the
minimum, :data:`~strongroom.vault.keys.KEY_FILE_KDF`.  The file's one line names that slot,
so opening derives that slot's key alone and skips the passphrase slots::

    strongroom-key 1 <slot id: 16 hex> <secret: 43 base64url characters>

The whole line is the slot's passphrase: anything that reads a password file (``--password-
file``, ``STRONGROOM_PASSWORD_FILE``, profiles, the agent) reads a key file too.
"""

from __future__ import annotations

import base64
import os
import re

_SECRET_BYTES = 32
_TEXT = re.compile(r"strongroom-key 1 ([0-9a-f]{16}) ([A-Za-z0-9_-]{43})")


def new_key_text() -> tuple[str, str]:
    """A new slot id and the key file line that opens it."""
    slot_id = os.urandom(8).hex()
    secret = base64.urlsafe_b64encode(os.urandom(_SECRET_BYTES)).rstrip(b"=").decode("ascii")
    return slot_id, f"strongroom-key 1 {slot_id} {secret}"


def slot_of(passphrase: str) -> str | None:
    """The slot id a key file line names; None for anything else (a passphrase)."""
    found = _TEXT.fullmatch(passphrase)
    return found.group(1) if found else None

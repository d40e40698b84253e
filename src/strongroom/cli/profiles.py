"""Named profiles in ``$XDG_CONFIG_HOME/strongroom/config.toml`` (``~/.config/...``).

::

    [profiles.default]              # used when no --profile / STRONGROOM_PROFILE is given
    vault = "/srv/backup/vault"
    password_command = "pass show strongroom"

    [profiles.offsite]
    vault = "https://backup.example.net:8443/offsite"
    password_file = "~/.config/strongroom/offsite.pw"
    token_file = "~/.config/strongroom/offsite.token"
    excludes = ["*.tmp", "/home/*/.cache"]

A profile gives defaults only: the command line wins over the environment, which wins over
the profile.  The file is read only when a value is missing (tomllib is loaded then).
"""

from __future__ import annotations

import os
import re
from dataclasses import field
from pathlib import Path
from typing import Any

from strongroom.errors import StrongroomError
from strongroom.records import dataclass

PROFILE_ENV = "STRONGROOM_PROFILE"
DEFAULT_PROFILE = "default"
_STRINGS = ("vault", "password_command", "password_file", "token_file")
_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


class ConfigError(StrongroomError):
    """The config file cannot be used (bad TOML, unknown key, missing profile)."""


@dataclass(frozen=True)
class Profile:
    name: str = ""
    vault: str | None = None
    password_command: str | None = None
    password_file: Path | None = None
    token_file: Path | None = None
    excludes: list[str] = field(default_factory=list)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "strongroom" / "config.toml"


def load_profile(name: str | None) -> Profile:
    """The profile ``name`` (None: ``STRONGROOM_PROFILE``, else ``default`` if the file has
    one).  A profile asked for by name must exist; the implicit default may be missing."""
    path = config_path()
    wanted = name or os.environ.get(PROFILE_ENV) or None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if wanted:
            raise ConfigError(f"profile {wanted!r}: no config file {path}") from None
        return Profile()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    profiles = _parse(path, text)
    if wanted and wanted not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"{path}: no profile {wanted!r} (profiles: {known})")
    return profiles.get(wanted or DEFAULT_PROFILE, Profile())


def _parse(path: Path, text: str) -> dict[str, Profile]:
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _LINE.search(message)
        line = f":{where.group(1)}" if where else ""
        raise ConfigError(f"{path}{line}: {_LINE.sub('', message).strip()}") from None
    for key in doc:
        if key != "profiles":
            raise ConfigError(
                f"{path}:{_line_of(text, key)}: unknown key {key!r} (use [profiles.NAME])"
            )
    tables = doc.get("profiles", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}:{_line_of(text, 'profiles')}: 'profiles' must be a table")
    return {name: _profile(path, text, name, body) for name, body in tables.items()}


def _profile(path: Path, text: str, name: str, body: Any) -> Profile:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}:{_line_of(text, key, name)}: profile {name!r}: {why}")

    if not isinstance(body, dict):
        raise bad(name, "must be a table")
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key in _STRINGS:
            if not isinstance(value, str) or not value:
                raise bad(key, f"{key} must be non-empty text")
            values[key] = Path(value).expanduser() if key.endswith("_file") else value
        elif key == "excludes":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise bad(key, "excludes must be a list of patterns")
            values[key] = list(value)
        else:
            raise bad(key, f"unknown key {key!r} (known: {', '.join([*_STRINGS, 'excludes'])})")
    if "password_command" in values and "password_file" in values:
        raise bad("password_file", "give password_command or password_file, not both")
    return Profile(name=name, **values)


def _line_of(text: str, key: str, profile: str | None = None) -> int:
    """The line where ``key`` is set (inside the profile's table if given): tomllib reports
    no positions for valid documents, so the text is searched; 1 if not found."""
    lines = text.splitlines()
    start = 0
    if profile is not None:
        header = re.compile(rf"^\s*\[\s*profiles\s*\.\s*\"?{re.escape(profile)}\"?\s*\]")
        start = next((i for i, line in enumerate(lines) if header.match(line)), 0)
    pattern = re.compile(rf"^\s*(\[\s*(profiles\s*\.\s*)?)?\"?{re.escape(key)}\"?\s*[=\].]")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return start + 1

"""Glob patterns for excludes and restore selections, matched against absolute paths.

Semantics (gitignore-like, documented in ``docs/files.md``):

* a pattern with no ``/`` (other than a trailing one) matches the base name at any depth:
  ``*.tmp``, ``.cache``;
* a pattern starting with ``/`` is anchored at the file system root: ``/home/*/.cache``;
* any other pattern with a ``/`` may start at any depth: ``build/out`` is ``**/build/out``;
* ``*`` matches any run of characters except ``/``; ``?`` one character except ``/``;
  ``[abc]``, ``[a-z]``, ``[!x]`` classes; ``**`` as a whole component matches zero or more
  components; a backslash escapes the next character;
* a trailing ``/`` matches directories only.

A matching directory covers its whole subtree (the walker does not enter it, a restore takes
all of it).  Paths and patterns are bytes (file names need not be UTF-8), so patterns are
compiled to ``bytes`` regular expressions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from strongroom.errors import FilesError
from strongroom.records import dataclass

_GLOB_CHARS = frozenset(b"*?[")


def has_magic(pattern: str | bytes) -> bool:
    """True if ``pattern`` holds a glob character (otherwise it names one path)."""
    raw = os.fsencode(pattern)
    return any(c in _GLOB_CHARS for c in raw)


def _class_end(pat: bytes, i: int) -> int:
    """Index just past the ``]`` closing the class that opens at ``pat[i] == '['``; -1 if none."""
    j = i + 1
    if j < len(pat) and pat[j] in b"!^":
        j += 1
    if j < len(pat) and pat[j] == ord("]"):
        j += 1
    while j < len(pat) and pat[j] != ord("]"):
        j += 1
    return j + 1 if j < len(pat) else -1


def _translate_class(body: bytes) -> bytes:
    negate = body[:1] in (b"!", b"^")
    if negate:
        body = body[1:]
    escaped = body.replace(b"\\", b"\\\\").replace(b"^", b"\\^")
    return b"[" + (b"^/" if negate else b"") + escaped + b"]"


def _translate(pat: bytes) -> bytes:
    """Regex source (no anchors) for one glob over ``/``-separated components."""
    out: list[bytes] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i : i + 1]
        if pat.startswith(b"**/", i) and (i == 0 or pat[i - 1] == ord("/")):
            out.append(b"(?:[^/]*/)*")
            i += 3
        elif pat.startswith(b"**", i) and i + 2 == n and (i == 0 or pat[i - 1] == ord("/")):
            out.append(b".*")
            i += 2
        elif c == b"*":
            out.append(b"[^/]*")
            i += 1
        elif c == b"?":
            out.append(b"[^/]")
            i += 1
        elif c == b"[":
            end = _class_end(pat, i)
            if end < 0:
                out.append(re.escape(c))
                i += 1
            else:
                out.append(_translate_class(pat[i + 1 : end - 1]))
                i = end
        elif c == b"\\" and i + 1 < n:
            out.append(re.escape(pat[i + 1 : i + 2]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return b"".join(out)


@dataclass(frozen=True)
class Pattern:
    """One compiled glob."""

    text: str
    regex: re.Pattern[bytes]
    dir_only: bool

    @classmethod
    def compile(cls, text: str) -> Pattern:
        raw = os.fsencode(text)
        dir_only = raw.endswith(b"/") and len(raw) > 1
        raw = raw.rstrip(b"/") if dir_only else raw
        source = _translate(raw) if raw.startswith(b"/") else b"(?:.*/)?" + _translate(raw)
        try:
            regex = re.compile(b"^" + source + b"$", re.DOTALL)
        except re.error as exc:  # a class such as [z-a]
            shown = repr(text) if len(text) <= 60 else repr(text[:60]) + "..."
            raise FilesError(f"bad pattern {shown}: {exc.msg}") from None
        return cls(text, regex, dir_only)

    def matches(self, path: bytes, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.match(path) is not None


class PatternSet:
    """Several patterns; a path matches the set when it matches any of them."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [Pattern.compile(p) for p in patterns if p]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: bytes, is_dir: bool) -> bool:
        return any(p.matches(path, is_dir) for p in self.patterns)

    def matching(self, path: bytes, is_dir: bool) -> Pattern | None:
        for p in self.patterns:
            if p.matches(path, is_dir):
                return p
        return None


def read_pattern_file(path: str | os.PathLike[str]) -> list[str]:
    """One pattern per line; blank lines and lines starting with ``#`` are ignored.

    Leading and trailing white space is stripped (escape it with ``\\`` or a class to keep it).
    Bytes that are not UTF-8 stay bytes (``surrogateescape``), as in file names; a NUL byte,
    which no file name holds, or a pattern that does not compile is a :class:`FilesError`
    naming the file and line.
    """
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        lines = [line.strip() for line in fh]
    found = []
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        where = f"{os.fsdecode(path)}, line {number}"
        if "\0" in line:
            raise FilesError(f"{where}: a NUL byte (not a file of patterns?)")
        try:
            Pattern.compile(line)
        except FilesError as exc:
            raise FilesError(f"{where}: {exc}") from None
        found.append(line)
    return found

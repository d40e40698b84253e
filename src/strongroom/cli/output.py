"""Console output shared by the command modules: human text on a TTY, JSON for scripts.

rich is imported only when human output is drawn (progress bars, styled text): a ``--json``
run and an error message on a pipe never load it, which saves about 7 MiB and 30 ms per
command.  Tables are drawn by :class:`Table` here: rich's table cost listings such as
``points`` about 0.1 s of CPU per run (issue 19), and it wrapped columns at 80 characters on
a pipe.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    """The console for human output on stdout (made on first use)."""
    from rich.console import Console

    return Console(highlight=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def escape(text: str) -> str:
    """``text`` with rich markup escaped, for embedding in a markup string."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def say(text: str) -> None:
    """One plain line on stdout (no markup)."""
    sys.stdout.write(text + "\n")


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes (wide East Asian characters take two)."""
    if text.isascii():
        return len(text)
    from unicodedata import combining, east_asian_width

    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


class Table:
    """A borderless table, laid out as rich's ``Table(box=None)`` was: columns as wide as
    their widest cell, two spaces apart, the header bold on a terminal."""

    def __init__(self, *headers: str, show_header: bool = True) -> None:
        self.headers = headers
        self.show_header = show_header
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def lines(self, *, bold: bool = False) -> list[str]:
        rows = ([self.headers] if self.show_header and self.headers else []) + self.rows
        count = max((len(r) for r in rows), default=0)
        widths = [max((_cells(r[i]) for r in rows if i < len(r)), default=0) for i in range(count)]
        out = []
        for row in rows:
            cells = [c + " " * (widths[i] - _cells(c)) for i, c in enumerate(row)]
            out.append((" " + "  ".join(cells)).rstrip())
        if bold and self.show_header and self.headers and out:
            out[0] = f"\x1b[1m{out[0]}\x1b[0m"
        return out

    def print(self) -> None:
        """To stdout; the header bold when stdout is a terminal that takes colour."""
        bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write("".join(line + "\n" for line in self.lines(bold=bold)))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _diagnostic(label: str, style: str, message: str) -> None:
    if not sys.stderr.isatty():
        sys.stderr.write(f"{label}: {message}\n")
        sys.stderr.flush()
        return
    err_console().print(f"[{style}]{label}:[/] {escape(message)}", soft_wrap=True)


def error(message: str) -> None:
    _diagnostic("error", "bold red", message)


def warn(message: str) -> None:
    _diagnostic("warning", "yellow", message)


def is_tty() -> bool:
    return sys.stderr.isatty()

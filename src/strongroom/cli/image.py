"""Commands for image-level backup and restore of disks and VMs."""

from __future__ import annotations

import typer


def register(app: typer.Typer, backup: typer.Typer, restore: typer.Typer) -> None:
    """Add this group's commands to the top-level, ``backup`` and ``restore`` apps."""

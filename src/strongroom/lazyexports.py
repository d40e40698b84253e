"""A package's public names imported on first use (PEP 562).

``strongroom.vault`` and ``strongroom.files`` list where each public name lives and import
that module only when the name is first used: opening a vault does not load numpy and the
engines before the passphrase's key is derived, and a restore does not load the backup side.
Top level (like :mod:`strongroom.errors`) because packages of two layers use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, home: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose name N lives in its
    submodule ``home[N]``; a name, once imported, is bound on the package."""
    listed = set(public)

    def getattr_(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | listed)

    return getattr_, dir_

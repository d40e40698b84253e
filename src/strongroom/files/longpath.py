"""Paths longer than one system call takes (``PATH_MAX``, 4096 bytes on Linux).

A folder whose path is near that length is worked in through a descriptor: opened one
component at a time with ``openat`` (never following a symlink) from the longest prefix that
still fits, its entries then reached with the ``*at`` calls (``os.lstat(name, dir_fd=)``,
``os.readlink``, ``os.open``) and, for the calls that have no ``*at`` form (xattrs), through
``/proc/self/fd/N/NAME``.  A shorter path takes the plain calls, so the common case pays one
length check and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

PATH_MAX = 4096  # with its NUL: a path of 4096 bytes or more is refused (ENAMETOOLONG)
_NAME_MAX = 255
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_STEP_FLAGS = _DIR_FLAGS | os.O_NOFOLLOW
# A backup lists folders without moving their atimes (relatime moves one once a day), which
# it records: an unchanged folder then stays unchanged (files/foldercache.py).  Only the
# owner or root may ask; others list as before.
_NOATIME = getattr(os, "O_NOATIME", 0)
_T = TypeVar("_T")

try:  # compiled (setup.py); without it folders are listed through os.scandir
    from strongroom.files import _listing
except ImportError:  # pragma: no cover - a build without a C compiler
    _listing = None  # type: ignore[assignment]


def is_long(folder: bytes) -> bool:
    """Whether the path of some entry of ``folder`` may be too long for a plain call."""
    return len(folder) + 1 + _NAME_MAX >= PATH_MAX


def open_dir(path: bytes) -> int:
    """A descriptor of the directory at the absolute ``path``, however long it is."""
    if len(path) < PATH_MAX:
        return os.open(path, _DIR_FLAGS)
    parts = path.split(b"/")
    fits = 1
    while len(b"/".join(parts[: fits + 1])) < PATH_MAX:
        fits += 1
    fd = os.open(b"/".join(parts[:fits]) or b"/", _DIR_FLAGS)
    try:
        for part in parts[fits:]:
            if part:
                step = os.open(part, _STEP_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: bytes, flags: int) -> int:
    """``os.open(path, flags)`` for a path of any length."""
    if len(path) < PATH_MAX:
        return os.open(path, flags)
    folder = open_dir(os.path.dirname(path))
    try:
        return os.open(os.path.basename(path), flags, dir_fd=folder)
    finally:
        os.close(folder)


def _proc(fd: int, name: bytes) -> bytes:
    return b"/proc/self/fd/%d/%s" % (fd, name)


def on_path(fn: Callable[..., _T], path: bytes, *args: Any, **kwargs: Any) -> _T:
    """``fn(path, *args, **kwargs)`` for a ``path`` of any length: a long one is reached
    through its folder's descriptor (``/proc/self/fd/N/NAME``; the last component is the
    entry itself, so ``follow_symlinks=False`` keeps its meaning)."""
    if len(path) < PATH_MAX:
        return fn(path, *args, **kwargs)
    folder = open_dir(os.path.dirname(path))
    try:
        return fn(_proc(folder, os.path.basename(path)), *args, **kwargs)
    finally:
        os.close(folder)


def on_paths(fn: Callable[[bytes, bytes], None], a: bytes, b: bytes) -> None:
    """``fn(a, b)`` (``os.rename``, ``os.link``) for paths of any length."""
    if len(a) < PATH_MAX:
        on_path(lambda b_: fn(a, b_), b)
        return
    on_path(lambda a_: on_path(lambda b_: fn(a_, b_), b), a)


def _open_listing(path: bytes) -> int | None:
    """A descriptor to list ``path`` through without moving its atime; None where that is
    not allowed (not the owner) or not known."""
    if not _NOATIME:
        return None
    try:
        return os.open(path, _DIR_FLAGS | _NOATIME)
    except PermissionError:
        return None


class Folder:
    """One directory whose entries are reached by name (see the module docstring); a context
    manager that closes the descriptor a long path needs."""

    __slots__ = ("fd", "listing", "path")

    def __init__(self, path: bytes) -> None:
        self.path = path
        self.fd: int | None = open_dir(path) if is_long(path) else None
        self.listing: int | None = None  # kept open: the entries stat through it

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        fd, self.listing = self.listing, None
        if fd is not None:
            os.close(fd)

    def join(self, name: bytes) -> bytes:
        return os.path.join(self.path, name)

    def reach(self, name: bytes, path: bytes) -> bytes:
        """A path to the entry ``name`` (whose full path is ``path``) for the calls that have
        no ``*at`` form: ``path`` itself, or the same entry through ``/proc`` when long."""
        return path if self.fd is None else _proc(self.fd, name)

    def lstat(self, name: bytes) -> os.stat_result:
        fd = self.fd if self.fd is not None else self.listing
        if fd is None:
            return os.lstat(os.path.join(self.path, name))
        return os.lstat(name, dir_fd=fd)  # the folder listed, without joining its path

    def unlink(self, name: bytes) -> None:
        if self.fd is None:
            os.unlink(os.path.join(self.path, name))
        else:
            os.unlink(name, dir_fd=self.fd)

    def readlink(self, name: bytes) -> bytes:
        fd = self.fd if self.fd is not None else self.listing
        if fd is None:
            return os.readlink(os.path.join(self.path, name))
        return os.readlink(name, dir_fd=fd)

    def lstat_all(
        self, skip: bytes, symlinks_apart: bool
    ) -> list[tuple[bytes, os.stat_result | int | None]] | None:
        """Every entry but those starting with ``skip``, in name order, with its lstat (or
        the errno of an lstat that failed, or None for a symlink when ``symlinks_apart``),
        in one compiled call (``_listing.c``); None where that cannot be had (no compiled
        module, or no descriptor to list through): :meth:`scandir` then."""
        if _listing is None:
            return None
        fd = self.fd
        if fd is None:
            fd = self.listing = _open_listing(self.path)
            if fd is None:
                return None
        return _listing.list_folder(fd, skip, symlinks_apart)

    def scandir(self) -> list[tuple[bytes, os.DirEntry[Any]]]:
        """(name, entry) of every entry; ``entry.stat(follow_symlinks=False)`` works for a
        long path too (it is an ``fstatat`` on the descriptor)."""
        fd = self.fd
        if fd is None:
            fd = self.listing = _open_listing(self.path)
            if fd is None:
                with os.scandir(self.path) as it:
                    return [(e.name, e) for e in it]
        with os.scandir(fd) as it:  # names come as str from a descriptor
            return [(os.fsencode(e.name), e) for e in it]

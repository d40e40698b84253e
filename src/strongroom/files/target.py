"""The restore target: created and checked, locked while a restore writes into it, and
cleaned of the temporary files a killed restore left."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from strongroom.errors import FilesError
from strongroom.files.longpath import Folder
from strongroom.files.nodes import FILE, STAGING_NAME, TEMP_NAME, TEMP_PREFIX
from strongroom.files.plan import Plan
from strongroom.files.vaultview import OnStorage


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def prepare_target(target: str | Path, vault: OnStorage, dry_run: bool) -> bytes:
    """The absolute target, created and checked writable."""
    t = os.path.abspath(os.fsencode(target))
    local_root = vault.capabilities.local_root
    if local_root is not None:
        root = os.path.realpath(os.fsencode(local_root))
        real = os.path.realpath(t)
        if real == root or real.startswith(root + b"/"):
            raise FilesError(f"restore target {_show(t)} is inside the vault")
    if os.path.lexists(t):
        if not os.path.isdir(t):
            raise FilesError(f"restore target {_show(t)} is not a directory")
    elif dry_run:
        return t
    else:
        try:
            os.makedirs(t)
        except OSError as exc:
            raise FilesError(f"cannot create restore target {_show(t)}: {exc.strerror}") from None
    probe = os.path.join(t, TEMP_PREFIX + b"probe-" + os.urandom(4).hex().encode())
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise FilesError(f"restore target {_show(t)} is not writable: {exc.strerror}") from None
    return t


@contextlib.contextmanager
def target_lock(target: bytes, dry_run: bool) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the target folder: a restore removes the temporary
    files a killed restore left, which must not be those of another one still running."""
    if dry_run or not os.path.isdir(target):
        yield
        return
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FilesError(f"another restore is writing into {_show(target)}") from None
        yield
    finally:
        os.close(fd)


def remove_stale_temps(folder: bytes, errors: list[tuple[str, str]]) -> None:
    """Remove what a killed restore left in ``folder``: only non-directories named exactly as
    a restore names its temporary files (:data:`TEMP_NAME`), never a user's file, and a
    dead restore's staging folder (:data:`STAGING_NAME`)."""
    try:
        with Folder(folder) as where:
            stale = []
            for name, entry in where.scandir():
                if not name.startswith(TEMP_PREFIX):
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and TEMP_NAME.fullmatch(name):
                    stale.append(name)
                elif is_dir and STAGING_NAME.fullmatch(name):
                    _remove_staging(where.join(name), errors)
            for name in stale:
                try:
                    where.unlink(name)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    path = _show(where.join(name))
                    errors.append(
                        (path, f"cannot remove a leftover temporary file: {exc.strerror}")
                    )
    except OSError as exc:
        errors.append((_show(folder), f"cannot list: {exc.strerror}"))


def _remove_staging(path: bytes, errors: list[tuple[str, str]]) -> None:
    """A dead restore's staging folder goes; a running restore holds an ``flock`` on its own
    (it may be writing into a folder below this one's target), which is then left alone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        _rmtree(path, errors)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_folder(path: bytes) -> Iterator[int]:
    """Create and lock a restore's staging folder; its device number, or -1 when it cannot
    be made (the restore then writes its temporaries beside their files).  Removed after."""
    try:
        os.mkdir(path, 0o700)
    except OSError:
        yield -1
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield os.fstat(fd).st_dev
    finally:
        errors: list[tuple[str, str]] = []
        _rmtree(path, errors)  # empty unless a failure left temporaries in it
        os.close(fd)


def _rmtree(path: bytes, errors: list[tuple[str, str]]) -> None:
    def failed(_fn: object, where: str | bytes, exc: BaseException) -> None:
        if not isinstance(exc, FileNotFoundError):
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            shown = where if isinstance(where, str) else _show(where)
            errors.append((shown, f"cannot remove a leftover temporary file: {reason}"))

    shutil.rmtree(path, onerror=lambda fn, where, info: failed(fn, where, info[1]))


def has_entries(target: bytes) -> bool:
    try:
        with os.scandir(target) as it:
            return any(True for _ in it)
    except FileNotFoundError:  # a dry run into a folder that does not exist yet
        return False


def check_space(target: bytes, plan: Plan) -> None:
    need = sum(
        sum(n for _, n in e.node.data_extents())
        for e in plan.entries
        if e.node.kind == FILE and e.link_to is None
    )
    st = os.statvfs(target)
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise FilesError(
            f"not enough space in {_show(target)}: the restore needs {need} bytes, {free} are free"
        )

"""A restore of a whole point into an empty target builds the point's tree inside its staging
folder, then moves it into the target (``restore._restore``), by subtrees (worker processes)
or by a plan (threads, and the workers of a plan).

Such a restore writes into no folder it did not create itself.  Built under
``<staging folder>/tree`` (0700, like the staging folder), those folders are seen by no one
else until the end, and a file can be created at its final name there, written, made durable
with its batch and left where it is: no temporary name, no rename, no link.  On the
loop-mounted ext4 of the benchmarks that is 20-23 us of kernel time for a small file against
29-33 us created unnamed and linked into place (docs/benchmarks.md, "Session 21").  At the end,
once everything is durable, each top-level entry is moved into the target with one rename
that never replaces anything (``RENAME_NOREPLACE``): should something have taken its name
meanwhile, it keeps both, as ``--on-conflict keep-both`` would.

What a kill leaves is the staging folder alone: nothing of the point under its final name,
complete or not, and the next restore into the same target removes it (``target.py``
``remove_stale_temps``).  A restore that fails removes it too (``staging_folder``).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable
from dataclasses import field

from strongroom import failpoints
from strongroom.records import dataclass

TREE_NAME = b"tree"  # in the staging folder: neither a counter name nor a worker's w<k>
_AT_FDCWD = -100  # <fcntl.h>
_RENAME_NOREPLACE = 1  # <linux/fs.h>
# renameat2 missing (an old C library) or the flag refused by the file system
_NO_NOREPLACE = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:  # the paths are passed as the bytes they are
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def make_tree(staging: bytes) -> bytes:
    """The folder the point's tree is built in, or b"" when it cannot be made (the restore
    then writes into the target as other restores do)."""
    tree = os.path.join(staging, TREE_NAME)
    try:
        os.mkdir(tree, 0o700)
    except OSError:
        return b""
    return tree


def move_no_replace(src: bytes, dest: bytes) -> None:
    """Rename ``src`` to ``dest`` unless ``dest`` exists (FileExistsError); where the kernel
    or file system cannot do that atomically, a look first, then the rename."""
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, src, _AT_FDCWD, dest, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NO_NOREPLACE:
            raise OSError(err, os.strerror(err), os.fsdecode(dest))
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(dest))
    os.rename(src, dest)


@dataclass
class Relocation:
    """Where the entries of the staged tree went: each top-level name's final path."""

    tree: bytes
    moved: dict[bytes, bytes] = field(default_factory=dict)
    kept_both: list[bytes] = field(default_factory=list)
    errors: list[tuple[bytes, str]] = field(default_factory=list)

    def final(self, path: bytes) -> bytes | None:
        """``path``'s place now: the same path when it was not in the tree, None when its
        top-level entry could not be moved (it goes with the staging folder)."""
        prefix = self.tree + b"/"
        if not path.startswith(prefix):
            return path
        top, sep, rest = path[len(prefix) :].partition(b"/")
        base = self.moved.get(top)
        return None if base is None else base + sep + rest

    def shown(self, path: str) -> str:
        """A path as reported (a str) after the move."""
        moved = self.final(os.fsencode(path))
        return path if moved is None else os.fsdecode(moved)


def move_out(tree: bytes, target: bytes, suffix: bytes) -> Relocation:
    """Every top-level entry of ``tree`` moved into ``target``; one already there by that
    name (it appeared during the restore) gets ``suffix`` (then ``-2``, ``-3``, ...)."""
    out = Relocation(tree)
    with os.scandir(tree) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        failpoints.hit("restore-tree-move")
        dest = os.path.join(target, name)
        try:
            got = _move_free(os.path.join(tree, name), dest, suffix)
        except OSError as exc:
            out.errors.append((dest, f"cannot move into place: {exc.strerror}"))
            continue
        out.moved[name] = got
        if got != dest:
            out.kept_both.append(got)
    return out


def _move_free(src: bytes, dest: bytes, suffix: bytes) -> bytes:
    """``src`` moved to ``dest`` or, where that is taken, to the first free name with
    ``suffix``; the name it got."""
    for candidate in (dest, dest + suffix, *(dest + suffix + b"-%d" % n for n in range(2, 100))):
        try:
            move_no_replace(src, candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(errno.EEXIST, "every name for it is taken", os.fsdecode(dest))

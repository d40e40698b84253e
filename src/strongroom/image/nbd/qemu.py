"""Run ``qemu-nbd`` on a private unix socket, so strongroom can read and write any image
format qemu understands (qcow2, vmdk, vhdx, raw ...) through its own NBD client.

The socket lives in a fresh ``mkdtemp`` folder (mode 0700): other local users cannot connect
to the export.  qemu-nbd runs in the foreground with ``--persistent`` and ``--shared`` so
several connections (a pipelined reader plus a block-status walker) can be open at once.
The folder is named with our pid and qemu-nbd dies with us (see :mod:`.lifetime`), so a
later run removes what a killed one left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final

from strongroom.errors import ImageError, NBDError
from strongroom.image.nbd.client import NBDClient
from strongroom.image.nbd.lifetime import kill_servers_of, pid_alive, spawn
from strongroom.image.nbd.negotiate import list_exports_at

__all__ = ["DIRECT_UNSAFE", "QemuNBD", "qemu_nbd_path", "sweep_stale_folders"]

DIRECT_UNSAFE: Final = "direct-unsafe"
"""A ``cache`` mode qemu-nbd has no name for: O_DIRECT writes (``cache.direct=on``) and
flushes ignored (``cache.no-flush=on``), for writing a new image that is fsynced once at the
end.  Buffered writes of a restore's gigabytes cost the kernel's page cache more than the
copy itself: a 2 GiB qcow2 restore (1.2 GB of data) took 5.6 s and 6.1 s of system time
in all with ``unsafe``, 2.4 s and 1.9 s with this (docs/benchmarks.md, "Session 11")."""

_INSTALL_HINT: Final = "qemu-nbd not found: install it with `apt-get install qemu-utils`"
_PREFIX: Final = "strongroom-nbd-"
_SOCKET: Final = "disk.sock"


def sweep_stale_folders() -> None:
    """Remove the private folders of runs that died (their qemu-nbd first, if any)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        owner = folder.name.removeprefix(_PREFIX).partition("-")[0]
        if not owner.isdigit() or int(owner) == os.getpid() or pid_alive(int(owner)):
            continue
        try:
            st = folder.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        kill_servers_of(folder / _SOCKET, "qemu-nbd")
        shutil.rmtree(folder, ignore_errors=True)


def qemu_nbd_path() -> str:
    """Absolute path of qemu-nbd; ImageError with an install hint when it is missing."""
    path = shutil.which("qemu-nbd")
    if path is None:
        raise ImageError(_INSTALL_HINT)
    return path


class QemuNBD:
    """A qemu-nbd process serving one image; a context manager.

    Read-only by default.  ``writable=True`` is meant for restores: ``--discard=unmap`` and
    ``--detect-zeroes=unmap`` let trims and zero writes punch holes so the target stays
    sparse, and ``cache`` defaults to ``writeback`` (the client's final flush makes it
    durable) because ``none`` (O_DIRECT) fails on file systems without O_DIRECT
    (``DIRECT_UNSAFE``: see there).
    ``bitmap`` exposes a persistent qcow2 dirty bitmap as ``qemu:dirty-bitmap:NAME``.
    ``locking=False`` opens the image without taking qemu's image locks (a forced write to
    an image another qemu process holds).
    """

    def __init__(
        self,
        image: str | Path,
        *,
        fmt: str = "raw",
        writable: bool = False,
        bitmap: str | None = None,
        cache: str = "writeback",
        shared: int = 8,
        start_timeout: float = 10.0,
        locking: bool = True,
    ) -> None:
        self.image = Path(image)
        self.fmt = fmt
        self.writable = writable
        self.bitmap = bitmap
        self.cache = cache
        self.shared = shared
        self.start_timeout = start_timeout
        self.locking = locking
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        if self._dir is None:
            raise ImageError("qemu-nbd is not running")
        return self._dir / _SOCKET

    @property
    def meta_contexts(self) -> list[str]:
        """Contexts worth asking for: allocation, plus the dirty bitmap if one is served."""
        contexts = ["base:allocation"]
        if self.bitmap is not None:
            contexts.append(f"qemu:dirty-bitmap:{self.bitmap}")
        return contexts

    def command(self, socket_path: Path) -> list[str]:
        args = [qemu_nbd_path(), "--persistent", f"--shared={self.shared}"]
        args.append(f"--socket={socket_path}")
        direct = self.cache == DIRECT_UNSAFE
        if not direct:
            args.append(f"--cache={self.cache}")
        if self.writable:
            args += ["--discard=unmap", "--detect-zeroes=unmap"]
        else:
            args.append("--read-only")
        if self.bitmap is not None:
            args.append(f"--bitmap={self.bitmap}")
        if self.locking and not direct:
            return [*args, f"--format={self.fmt}", str(self.image)]
        filename = str(self.image).replace(",", ",,")
        opts = [f"driver={self.fmt}", "file.driver=file", f"file.filename={filename}"]
        if not self.locking:
            opts.append("file.locking=off")
        if direct:
            opts += ["cache.direct=on", "cache.no-flush=on"]
        return [*args, "--image-opts", ",".join(opts)]

    def start(self) -> QemuNBD:
        """Start qemu-nbd and wait until its socket accepts connections."""
        qemu_nbd_path()  # fail before creating the private folder
        if not self.image.exists():
            raise ImageError(f"image not found: {self.image}")
        sweep_stale_folders()
        # mkdtemp: mode 0700; the pid tells a later run whether the owner still lives
        self._dir = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        command = self.command(self.socket_path)
        log = (self._dir / "qemu-nbd.log").open("wb")
        with log:
            # restore_signals=False keeps SIGXFSZ ignored, as Python has it: a write past a
            # file size limit then fails with EFBIG (reported as ENOSPC) instead of killing
            # qemu-nbd.  spawn: qemu-nbd dies with us, even on kill -9.
            self._proc = spawn(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                restore_signals=False,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise ImageError(
                    f"qemu-nbd exited with status {self._proc.returncode} serving "
                    f"{self.image}: {self._log_text()}"
                )
            if self.socket_path.exists():
                with contextlib.suppress(NBDError):
                    list_exports_at(self.socket_path, timeout=1.0)  # a clean handshake probe
                    return
            if time.monotonic() > deadline:
                raise ImageError(f"qemu-nbd did not start within {self.start_timeout} s")
            time.sleep(0.02)

    def _log_text(self) -> str:
        if self._dir is None:
            return ""
        try:
            text = (self._dir / "qemu-nbd.log").read_text(errors="replace").strip()
        except OSError:
            return ""
        return text[-2000:] or "(no output)"

    def connect(
        self, meta_contexts: Iterable[str] | None = None, *, max_in_flight: int = 16
    ) -> NBDClient:
        """An NBDClient on this export (default contexts: :attr:`meta_contexts`)."""
        contexts = self.meta_contexts if meta_contexts is None else list(meta_contexts)
        return NBDClient(self.socket_path, meta_contexts=contexts, max_in_flight=max_in_flight)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate qemu-nbd (SIGTERM, then SIGKILL after ``timeout``); remove the folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> QemuNBD:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

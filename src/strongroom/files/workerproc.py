"""One helper process of a files backup or restore, on one end of a socket pair.

The helper is ``python -m MODULE FD`` (FD: its end of the pair); messages are pickles
(:mod:`strongroom.files.channel`), and the first one carries the vault's keys
(:class:`~strongroom.vault.VaultHandoff`), so they never reach argv or the environment.  A
helper that dies, or reports a failure, becomes a :class:`FilesError` (or the
:class:`StrongroomError` it reported) in the parent.  The helper's side of the conventions is
:func:`strongroom.files.workermain.serve_main`.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Iterable
from typing import Any

from strongroom.errors import FilesError, StrongroomError
from strongroom.files.channel import Channel, Watch, wait

# A helper runs ``python -c _BOOT FD``: ``python -m MODULE FD`` with the cyclic collector
# off while the module loads, as the CLI does (strongroom.collector says why).
_BOOT = (
    "import gc; gc.disable(); import runpy; "
    "runpy.run_module(%r, run_name='__main__', alter_sys=True)"
)

_EXIT_WAIT = 60.0  # seconds for a helper to exit at the end of its input
_SILENCE = 60.0  # seconds without a message while answers are owed: ask where they are
_ABANDON_WAIT = 2.0  # after SIGTERM, before SIGKILL
# Messages taken from one helper per look (those already there).  One per look left a
# restore by subtrees' worker without folders: its 16 answers were read one per job the
# parent wrote, and until then the parent counted it full (docs/benchmarks.md, "Session 28").
_DRAIN = 256


class WorkerProcess:
    """The parent's handle on one helper: its pipe, its process, and the parent's
    bookkeeping (``ready`` once it said so, ``inflight`` requests it has not answered)."""

    def __init__(self, module: str, role: str) -> None:
        """Start the helper; it loads its modules and waits for :meth:`open`'s message."""
        self.role = role  # "backup" or "restore": for messages
        self.ready = False
        self.inflight = 0
        self.sent = self.answered = 0  # requests through the pool, answers to them
        self.probe: int | None = None  # requests sent when a status was asked for
        parent, child = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT % module, str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.conn = Channel(parent.detach())

    def open(self, first: tuple[Any, ...]) -> None:
        """Send the helper its first message (what to open); OSError if it is gone."""
        try:
            self.conn.send(first)
        except OSError:
            self.proc.kill()
            self.proc.wait()
            self.conn.close()
            raise

    def send(self, msg: tuple[Any, ...]) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            raise FilesError(self._died()) from None

    def send_fd(self, fd: int) -> None:
        try:
            self.conn.send_fd(fd)
        except OSError:
            raise FilesError(self._died()) from None

    def recv(self) -> tuple[Any, ...]:
        try:
            msg: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            raise FilesError(self._died()) from None
        return msg

    def next_reply(self) -> tuple[Any, ...]:
        """The next message that is not a note (``ready``, a late ``status``): for a request
        sent outside the pool, once the pool is idle."""
        msg = self.recv()
        while msg[0] in ("ready", "status"):
            msg = self.recv()
        return msg

    def failure(self, msg: tuple[Any, ...]) -> StrongroomError:
        """The error a ``failed`` message (or any unexpected one) stands for."""
        what = f"a {self.role} worker process"
        if msg[0] != "failed":
            return FilesError(f"unexpected message from {what}: {msg[0]!r}")
        try:
            exc = pickle.loads(msg[1])
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
            return FilesError(f"{what} failed: {msg[2]}")
        if isinstance(exc, StrongroomError):
            return exc
        return FilesError(f"{what} failed: {msg[2]}")

    def _died(self) -> str:
        code = self.proc.poll()
        how = f"exit status {code}" if code is not None else "its pipe closed"
        return f"a {self.role} worker process stopped ({how})"


class WorkerPool:
    """Helpers that take requests (tuples, the first item their kind) in turn: each request
    goes to a ready helper with fewer than :attr:`queued` unanswered, the rest wait here
    for whichever is free first.  Answers other than ``ready`` and ``failed`` come back from
    :meth:`answers`, one per request; so do messages of the ``unsolicited`` kinds, which a
    helper sends when it likes (they answer no request)."""

    queued = 2  # one at work, one waiting in its pipe

    def __init__(
        self,
        module: str,
        firsts: Iterable[tuple[Any, ...]],
        role: str,
        unsolicited: Iterable[str] = (),
        started: Iterable[WorkerProcess] = (),
    ) -> None:
        """``started``: helpers of ``module`` already started (``files/warmstart.py``), used
        before any new one."""
        self.unsolicited = frozenset(unsolicited)
        self.workers: list[WorkerProcess] = []
        self._watch: Watch | None = None  # over the workers' pipes, once they are all started
        self.queue: deque[tuple[Any, ...]] = deque()
        spare = list(started)
        try:
            for first in firsts:
                w = spare.pop() if spare else WorkerProcess(module, role)
                self.workers.append(w)
                w.open(first)
        except OSError as exc:
            self.close()
            raise FilesError(f"cannot start a {role} worker process: {exc.strerror}") from None
        finally:
            close_all(spare)  # more than wanted: they exit at the end of their input

    @property
    def ready(self) -> bool:
        return any(w.ready for w in self.workers)

    @property
    def full(self) -> bool:
        """No helper could take a request now: each is starting or has :attr:`queued`
        unanswered, or requests already wait here."""
        return bool(self.queue) or not any(
            w.ready and w.inflight < self.queued for w in self.workers
        )

    @property
    def busy(self) -> bool:
        return bool(self.queue) or any(w.inflight for w in self.workers)

    def submit(self, request: tuple[Any, ...]) -> None:
        self.queue.append(request)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.queue:
            idle = [w for w in self.workers if w.ready and w.inflight < self.queued]
            if not idle:
                return
            w = min(idle, key=lambda x: x.inflight)
            w.send(self.queue.popleft())
            w.inflight += 1
            w.sent += 1

    def answers(self, timeout: float | None) -> list[tuple[Any, ...]]:
        """The answers that arrived within ``timeout`` (None: until some message came).

        Waiting without a timeout, a long silence while answers are owed (or a helper has not
        said it is ready) makes each such helper report how many requests it has handled: one
        whose earlier answers did not all arrive fails the run instead of leaving it waiting
        for ever.
        """
        if self._watch is None:
            self._watch = Watch([w.conn for w in self.workers])
        ready = self._watch.ready(_SILENCE if timeout is None else timeout)
        while not ready and timeout is None:
            self._probe()
            ready = self._watch.ready(_SILENCE)
        got: list[tuple[Any, ...]] = []
        for conn in ready:
            w = next(x for x in self.workers if x.conn is conn)
            for _ in range(_DRAIN):  # all that came, not one: see _DRAIN
                self._note(w, w.recv(), got)
                if not wait([conn], 0):
                    break
        self._dispatch()
        return got

    def _note(self, w: WorkerProcess, msg: tuple[Any, ...], got: list[tuple[Any, ...]]) -> None:
        if msg[0] == "ready":
            w.ready = True
        elif msg[0] == "failed":
            raise w.failure(msg)
        elif msg[0] == "status":
            self._check(w, msg[1])
        else:
            if msg[0] not in self.unsolicited:
                w.inflight -= 1
                w.answered += 1
            got.append(msg)

    def _probe(self) -> None:
        for w in self.workers:
            if (w.inflight or not w.ready) and w.probe is None:
                w.probe = w.sent
                w.send(("status",))

    def _check(self, w: WorkerProcess, handled: object) -> None:
        """A status reply comes after the answers to every request sent before it, and only
        from a helper at work (so it is ready, whether or not its ``ready`` came)."""
        probe, w.probe = w.probe, None
        w.ready = True
        if probe is not None and w.answered < probe:
            raise FilesError(
                f"a {w.role} worker process is out of step: {w.answered} answers to {probe} "
                f"requests ({handled} handled)"
            )

    def end_input(self) -> None:
        """Close every helper's pipe: at the end of its input it exits."""
        for w in self.workers:
            w.conn.close()
        self._watch = None  # its descriptors are closed (and may be numbers of other files)

    def close(self, abandon: bool = False) -> None:
        """Stop every helper (:func:`close_all`)."""
        close_all(self.workers, abandon)
        self.workers = []
        self._watch = None


def close_all(workers: Iterable[WorkerProcess], abandon: bool = False) -> None:
    """Stop the helpers: at the end of their input they exit by themselves; when the run is
    abandoned, SIGTERM (one deep in its work would not look at its input before it is done)
    gives them a moment to remove their temporary files, and SIGKILL follows."""
    workers = list(workers)
    for w in workers:
        with contextlib.suppress(OSError):
            w.conn.close()
        if abandon and w.proc.poll() is None:
            w.proc.terminate()
    for w in workers:
        try:
            w.proc.wait(timeout=_ABANDON_WAIT if abandon else _EXIT_WAIT)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()

"""A files backup's worker process: lists the directories its parent hands it and reads their
files into its own packs (see ``procpool.py`` for why and for the protocol).

    python -m strongroom.files.procwork FD

FD is this end of the parent's socket pair.  The first message opens the vault; then each
``dir`` message gets a ``dir`` answer, ``flush`` writes the packs and index objects and answers
with their counts.  End of input without a flush abandons the run (the parent failed or was
interrupted): nothing is flushed.  SIGINT is ignored, since the terminal sends it to the whole
process group and the parent decides; the parent's SIGTERM (an abandoned run) unwinds through
the clean-up that removes temporary packs; the parent's death closes the pipe.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from strongroom import failpoints
from strongroom.errors import StrongroomError
from strongroom.files.procpool import WrittenCounts


def _serve(conn: Connection) -> None:
    from strongroom.files.backup import TreeWalker
    from strongroom.files.cache import cache_scope
    from strongroom.vault import open_handoff

    kind, handoff, opts = conn.recv()
    if kind != "open":
        return
    vault = open_handoff(handoff)
    writer = vault.writer()
    engine = TreeWalker(vault, writer, opts)
    if opts.use_cache and opts.source:
        engine.cache_key = vault.local_cache_key(cache_scope(opts.source))
    try:
        conn.send(("ready",))
        while True:
            try:
                msg: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            if msg[0] == "dir":
                failpoints.hit("procwork-dir")
                _, tag, path, dev, cached = msg
                conn.send(("dir", tag, engine.list_only(path, dev, cached)))
            elif msg[0] == "flush":
                before = set(vault.index_names)
                writer.flush()
                st = writer.stats
                names = sorted(vault.index_names - before)
                counts = WrittenCounts(st.stored_new, st.raw_new, st.chunks_new, names)
                conn.send(("flushed", counts))
    finally:
        engine.pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        vault.close()


def _report(conn: Connection, exc: BaseException) -> None:
    try:
        blob = pickle.dumps(exc)
    except (pickle.PicklingError, TypeError, AttributeError):
        blob = b""
    with contextlib.suppress(OSError):
        conn.send(("failed", blob, str(exc) or type(exc).__name__))


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(1)  # unwinds through _serve's clean-up: temporary packs are removed


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    conn = Connection(int(argv[1]))
    try:
        _serve(conn)
    except (StrongroomError, OSError, MemoryError) as exc:
        _report(conn, exc)
        return 1
    except EOFError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

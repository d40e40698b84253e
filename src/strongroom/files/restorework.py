"""A files restore's worker process: writes the batches of files its parent hands it (see
``restoreprocs.py`` for why and for the protocol).

    python -m strongroom.files.restorework FD

FD is this end of the parent's socket pair.  The first message opens the vault; then each
``files`` message gets a ``files`` answer once its files are in place.  End of input ends
the worker; the parent's SIGTERM (an abandoned restore) unwinds through the clean-up that
removes the batch's temporary files.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection
from operator import attrgetter
from typing import Any

from strongroom import failpoints
from strongroom.files.contents import job_workers
from strongroom.files.fetch import NO_CHUNKS, ContentWriter, FileTask, plan_jobs
from strongroom.files.placing import TempNames, make_durable, rename_into_place
from strongroom.files.plan import Entry
from strongroom.files.restoreprocs import BatchResult, Item, WorkerSetup
from strongroom.files.workerproc import serve_main
from strongroom.vault import Vault, open_handoff


def run_batch(vault: Vault, setup: WorkerSetup, names: TempNames, items: list[Item]) -> BatchResult:
    """Write the files, make them durable, rename them into place."""
    entries = [Entry(folder, name, node, action) for folder, name, node, action in items]
    place_of = vault.place_of
    for e in entries:
        e.place = place_of(e.node.chunks[0]) if e.node.chunks else NO_CHUNKS
    entries.sort(key=attrgetter("place"))  # the batch in the order of the packs
    writer = ContentWriter(vault, names, verify=setup.verify, as_root=setup.as_root)
    result = BatchResult()
    try:
        done = _write(writer, entries, job_workers(entries, vault.capabilities.read_workers))
        at = {id(e): i for i, e in enumerate(entries)}
        good: list[tuple[int, FileTask]] = []
        for task in done:
            i = at[id(task.entry)]
            result.issues += [(i, reason) for reason in task.issues or ()]
            if task.failure is not None:
                result.failed.append((i, task.failure))
                continue
            result.wrote += 1
            result.written += task.written
            result.verified += task.verified
            good.append((i, task))
        if setup.durable and good:
            make_durable(setup.target)
        for i, task in good:
            failpoints.hit("restore-rename")
            failure = rename_into_place(task.tmp, task.entry.dest)
            writer.live.discard(task)
            if failure is not None:
                result.failed.append((i, failure))
    except BaseException:
        writer.discard_all()
        raise
    return result


def _write(writer: ContentWriter, entries: list[Entry], threads: int) -> list[FileTask]:
    jobs = plan_jobs(entries, writer.task)
    if threads <= 1:
        return [task for job in jobs for task in writer.run(job)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="files-restore") as pool:
        return [task for tasks in pool.map(writer.run, jobs) for task in tasks]


def _serve(conn: Connection) -> None:
    kind, handoff = conn.recv()
    if kind != "open":
        return
    vault = open_handoff(handoff)
    try:
        vault.place_of(bytes(32))  # loads the index while the parent plans
        conn.send(("ready",))
        kind, setup = conn.recv()
        if kind != "setup":
            return
        names = TempNames(setup.staging, setup.token, setup.target_dev, setup.first_name)
        while True:
            try:
                msg: tuple[Any, ...] = conn.recv()
            except EOFError:
                return
            if msg[0] == "files":
                failpoints.hit("restorework-batch")
                conn.send(("files", msg[1], run_batch(vault, setup, names, msg[2])))
    finally:
        vault.close()


def main(argv: list[str]) -> int:
    return serve_main(argv, _serve)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""A restore by subtrees: the whole of a point restored into an empty target by worker
processes that plan as well as write.

With a plan made by the parent (``restoreprocs.py``) the parent decodes every tree of the
point before the first file is written: about a second for 50,000 files, during which the
workers wait.  When nothing can be in the way (the target is empty, the whole point is
restored), there are no conflicts to decide up front, so the plan is made where the files are
written: the parent hands out folders, a worker reads a folder's tree, creates its subfolders
and special files, answers with the subfolders (handed out next, to whichever worker is free)
and writes the folder's files with those of other folders in batches (written, made durable,
renamed; see ``restorebatch.py``).  When every worker is full the parent plans and writes
the next folder itself, exactly as a worker does, so one worker and the parent keep two
cores busy (the parent has little else to do meanwhile; a worker less is some 50 MiB less).
The parent keeps what needs the whole tree: the folders' metadata (applied last, children
first), the members of hard-link groups (each group's first written with the other files, the
rest linked to it by the parent once every worker is done) and the inode flags.

What the up-front plan gave and this does not: the free-space check before anything is
written (a full file system still stops the restore with "no space left", every temporary
file removed) and one global sort of the files by pack (each batch is sorted instead).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import field, replace
from typing import TYPE_CHECKING, Any

from strongroom.errors import FilesError
from strongroom.files.contents import ContentSink
from strongroom.files.nodes import Node
from strongroom.files.placing import TempNames
from strongroom.files.plan import CREATE, Entry
from strongroom.files.restorebatch import FILE_COST, TreeWorker, own_staging
from strongroom.files.restoreprocs import (
    DirResult,
    FilesDone,
    Item,
    ProcessContents,
    WorkerSetup,
    own_setup,
)
from strongroom.files.restoretypes import RestoreSummary
from strongroom.files.vaultview import RestoreVault
from strongroom.records import dataclass

if TYPE_CHECKING:
    from strongroom.files.workerproc import WorkerProcess

# Folders a worker holds (planned at once, written in batches): while the parent writes a batch
# of its own, which takes a few tenths of a second, the worker must not run out of folders.
# With two (the pool's default) one worker and the parent restored 50,000 small files with the
# worker busy 28-56 % of the time, with 16 it was 60-80 %, as busy as the parent.
_DIRS_AHEAD = 16
# Folders handed out in one message, and their plans answered in one: a message each way per
# folder cost the two processes 50-65 us of pickling and system calls (`dirs`' 12,500 folders
# of two files: 12,000 messages, now 1,300; docs/benchmarks.md, "Session 39").
_DIRS_A_MESSAGE = 8
# What the parent must hold before it hands a share to a worker out of files: some 128 small
# files' worth (restorebatch.FILE_COST each), not a few that cost more to send than to write.
_SHARE_FROM = 128 * FILE_COST


@dataclass
class TreeOutcome:
    """What the parent finishes after the workers: folders (in creation order), hard-link
    group members, inode flags of files in place; and the counts."""

    dirs: list[Entry] = field(default_factory=list)
    # the other members of hard-link groups: (folder, name, the first member's destination)
    links: list[tuple[bytes, bytes, bytes]] = field(default_factory=list)
    firsts: list[bytes] = field(default_factory=list)  # written: the groups' first members
    flagged: list[tuple[bytes, int]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0
    others: int = 0
    helped: int = 0  # folders the parent planned and wrote itself
    returned: int = 0  # files a worker planned and handed back at the end
    shared: int = 0  # files the parent planned and handed to a worker out of them

    def count_into(self, s: RestoreSummary) -> None:
        """The counts and errors into the restore's summary."""
        s.helped_dirs, s.returned_files, s.shared_files = self.helped, self.returned, self.shared
        s.files, s.others, s.dirs = s.files + self.files, s.others + self.others, len(self.dirs)
        s.errors += self.errors


def restore_tree(
    vault: RestoreVault,
    procs: ProcessContents,
    root: Node,
    target: bytes,
    setup: WorkerSetup,
    sink: ContentSink,
) -> TreeOutcome:
    """Every folder, special file and file below ``root`` (except hard-link group members,
    returned) restored into ``target``.  The workers stay for the end of the restore
    (``restoretail.py``): the caller closes them; on a failure here they are stopped."""
    mine = own_setup(setup, 0)
    names = TempNames(own_staging(mine), mine.token, mine.target_dev, mine.first_name, mine.tree)
    per_message = max(1, min(_DIRS_A_MESSAGE, _DIRS_AHEAD))
    procs.pool.queued = _DIRS_AHEAD // per_message  # requests, each of up to per_message
    run = _TreeRun(procs, sink, TreeWorker(vault, mine, names), per_message)
    try:
        procs.send_setup(replace(setup, shares=True))
        run.kept.append((root, target))
        run.until_planned()
        run.write_shared()
        run.flush()
    except BaseException:
        procs.pool.close(abandon=True)
        raise
    finally:
        run.mine.close()
    return run.out


class _TreeRun:
    def __init__(
        self, procs: ProcessContents, sink: ContentSink, mine: TreeWorker, per_message: int
    ) -> None:
        self.procs, self.sink, self.mine = procs, sink, mine
        self.per_message = per_message  # folders handed out in one message
        self.out = TreeOutcome()
        self.tags = itertools.count()
        self.dests: dict[int, bytes] = {}  # folder handed out -> its destination
        self.kept: list[tuple[Node, bytes]] = []  # folders to plan: a worker's, else the parent's
        self.hungry: set[int] = set()  # workers (their ``writer``) out of files
        self.groups: dict[str, bytes] = {}  # hard-link group -> its first member's destination

    def _give_out(self) -> None:
        """The kept folders last met first, to workers with room, a few to a message."""
        pool, kept = self.procs.pool, self.kept
        while kept and not pool.full:
            batch: list[tuple[int, Node, bytes]] = []
            for _ in range(min(len(kept), self.per_message)):
                node, dest = kept.pop()
                tag = next(self.tags)
                self.dests[tag] = dest
                batch.append((tag, node, dest))
            pool.submit(("dirs", batch))

    def until_planned(self) -> None:
        """Until every folder is planned: the workers' answers as they come and, while every
        worker is full, the kept folders here (one at a time, then the answers again)."""
        pool = self.procs.pool
        while self.kept or pool.busy:
            self._give_out()
            if not self.kept:
                self._wait()
                continue
            node, dest = self.kept.pop()
            self.out.helped += 1
            self._planned(dest, self.mine.plan_dir(node, dest))
            if self.mine.due:
                self._written(self.mine.flush(self.feed))
            self.take(pool.answers(0))
            self._share()

    def _wait(self) -> None:
        """The workers' next answers; meanwhile the parent writes its pending files."""
        pool = self.procs.pool
        answers = pool.answers(0)
        while not answers and self.mine.pending:
            self._written(self.mine.idle())
            answers = pool.answers(0)
        self.take(answers or pool.answers(None))
        self._share()

    def write_shared(self) -> None:
        """Every folder planned: the files the parent still holds written, a share handed
        to each worker that runs out meanwhile (a folder of 50,000 files planned here
        before the worker was ready had been written by the parent alone)."""
        if self.mine.pending:
            self._written(self.mine.flush(self.feed))

    def _share(self) -> None:
        """Hand each worker out of files an even share of the parent's, when there is
        enough to be worth the message."""
        if not self.hungry or self.mine.cost < _SHARE_FROM:
            return
        share = self.mine.cost // (len(self.hungry) + 1)
        workers = self.procs.pool.workers
        for k in sorted(self.hungry):
            items = self.mine.give(share)
            if not items:  # one file worth more than the share (a big one): it stays here
                return
            self.out.shared += len(items)
            workers[k - 1].send(("adopt", items))
            self.hungry.discard(k)

    def feed(self) -> None:
        """Between the jobs of a batch the parent writes (up to 1,000 files or 64 MiB): the
        workers' answers taken and kept folders handed out, not only once the batch is
        done.  On /usr the worker had spent a third of the restore waiting on its pipe
        (docs/benchmarks.md, "Session 18")."""
        pool = self.procs.pool
        self.take(pool.answers(0))
        self._give_out()
        self._share()

    def take(self, answers: list[tuple[Any, ...]]) -> None:
        for msg in answers:
            if msg[0] == "dirs" and _plans(msg[1]):
                for tag, got in msg[1]:
                    self._planned(self.dests.pop(tag), got)
            elif msg[0] == "written" and isinstance(msg[1], FilesDone):
                self._written(msg[1])
            elif msg[0] == "hungry" and isinstance(msg[1], int):
                self.hungry.add(msg[1])
            else:
                raise FilesError(f"unexpected answer from a restore worker process: {msg[0]!r}")

    def _planned(self, dest: bytes, got: DirResult) -> None:
        out = self.out
        for node in got.subdirs:
            e = Entry(dest, node.name, node, CREATE)
            out.dirs.append(e)  # after its parent: reversed, children come first
            self.kept.append((node, e.dest))  # for a worker with room (_give_out), or here
        if got.links:
            self._grouped(dest, got.links)
        out.others += got.others
        out.errors += got.errors

    def _grouped(self, folder: bytes, nodes: list[Node]) -> None:
        """Members of hard-link groups, as their folders are planned: a group's first one
        joins the parent's files (shared with the workers as the rest are), the others are
        linked to it once every file is written and are kept as three names, not nodes.
        Until session 34 every member waited as an entry with its node until every folder
        was planned: 20,000 members took 22 MiB of the parent's peak."""
        groups, out = self.groups, self.out
        adopted: list[Item] = []
        for node in nodes:
            assert node.link is not None  # restorebatch.plan_dir sends only those
            dest = os.path.join(folder, node.name)
            first = groups.setdefault(node.link, dest)
            if first is dest:
                out.firsts.append(dest)
                adopted.append((folder, node.name, node, CREATE))
            else:
                out.links.append((folder, node.name, first))
        if adopted:
            self.mine.adopt(adopted)

    def _written(self, done: FilesDone) -> None:
        out = self.out
        out.files += done.placed
        out.errors += done.errors
        out.flagged += done.flagged
        if done.wrote:
            self.sink.wrote(done.wrote, done.written, done.verified, done.last)

    def flush(self) -> None:
        """Every worker and the parent write what they still hold (the last batches are
        smaller).  A worker is given folders first and plans them at once, so it tends to
        hold more files at the end: it hands back half the difference, and the two finish
        about together (the parent of a restore of 20,000 files had waited 0.5 s of 2.9
        for its worker; docs/benchmarks.md, "Session 28")."""
        workers = self.procs.pool.workers
        for w in workers:  # each hands back files to even out with what the parent holds
            w.send(("flush", self.mine.cost))
            items: list[Item] = self._next(w, "spare")
            self.out.returned += len(items)
            self.mine.adopt(items)
        self._written(self.mine.finish())  # while the workers write their last batches
        for w in workers:
            self._written(self._next(w, "flushed"))

    def _next(self, w: WorkerProcess, kind: str) -> Any:
        """The body of ``w``'s next ``kind`` message, the files it wrote meanwhile taken."""
        while True:
            msg = w.next_reply()
            if msg[0] == kind:
                return msg[1]
            if msg[0] == "hungry":
                continue  # said before the flush reached it: nothing is handed over now
            if msg[0] != "written":
                raise w.failure(msg)
            self.take([msg])


def _plans(body: object) -> bool:
    """Whether a ``dirs`` answer's body is what a worker sends: (tag, plan) pairs."""
    return isinstance(body, list) and all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], DirResult)
        for pair in body
    )

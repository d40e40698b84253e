"""A files restore's worker process: writes the batches of files its parent hands it (see
``restoreprocs.py`` for why and for the protocol).

    python -m strongroom.files.restorework FD

FD is this end of the parent's socket pair.  The first message opens the vault, the second
(``setup``) says where to write.  Then a ``files`` request (a batch of the parent's plan) gets
a ``files`` answer once its files are in place; a ``dirs`` request (a restore by subtrees,
``restoretree.py``: a few folders) is answered at once with their plans, their files written
later in batches (``written``; ``flush`` says how much the parent still holds: the worker hands back
files to even that out, ``spare``, and writes the rest); then it links a slice of the
hard-link group members (``link``, answered ``linked``; ``restoretail.py``).  A worker of
a restore by subtrees running out of files says so (``hungry``, unsolicited) and may be
handed some of the parent's (``adopt``, no answer).  ``status`` says how many requests were
handled.  End of input ends the worker; the parent's SIGTERM (an abandoned restore) unwinds
through the clean-up that removes the batch's temporary files.
"""

from __future__ import annotations

import sys
from typing import Any

from strongroom import failpoints, malloctune
from strongroom.files.channel import Channel, wait
from strongroom.files.placing import TempNames
from strongroom.files.restorebatch import TreeWorker, own_staging, run_batch
from strongroom.files.restoretail import make_links
from strongroom.files.workermain import serve_main
from strongroom.vault import open_handoff

_LOW = 512  # pending files below which a worker asks for more (some 30 ms of its writes)


def _serve(conn: Channel) -> None:
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
        names = TempNames(
            own_staging(setup), setup.token, setup.target_dev, setup.first_name, setup.tree
        )
        tree = TreeWorker(vault, setup, names)
        try:
            _requests(conn, tree)
        finally:
            tree.close()
    finally:
        vault.close()


def _requests(conn: Channel, tree: TreeWorker) -> None:
    handled = 0  # requests of the pool's (a status reply says how many)
    # A restore by subtrees: running low on files, say so once (until more come), so that the
    # parent's share arrives before this runs dry.  Not after ``flush``: the parent no longer
    # hands anything over then.
    ask = tree.setup.shares
    while True:
        if ask and len(tree.pending) < _LOW and not wait([conn], 0):  # no folder waiting
            conn.send(("hungry", tree.setup.writer))
            ask = False
        if tree.pending and not wait([conn], 0):  # nothing asked: write what is pending
            done = tree.idle()
            if not done.empty:
                conn.send(("written", done))
            continue
        try:
            msg: tuple[Any, ...] = conn.recv()
        except EOFError:
            return
        if msg[0] == "status":
            conn.send(("status", handled))
            continue
        handled += msg[0] in ("files", "dirs")
        ask = tree.setup.shares and msg[0] in ("dirs", "adopt")
        _answer(conn, msg, tree)


def _answer(conn: Channel, msg: tuple[Any, ...], tree: TreeWorker) -> None:
    if msg[0] == "files":  # a batch the parent planned
        failpoints.hit("restorework-batch")
        conn.send(("files", msg[1], run_batch(tree, msg[2])))
    elif msg[0] == "dirs":  # folders to plan: answered at once, their files written later
        failpoints.hit("restorework-batch")
        conn.send(("dirs", [(tag, tree.plan_dir(node, dest)) for tag, node, dest in msg[1]]))
        # a job's worth a folder while a batch is due (a whole batch here had kept the parent's
        # flush waiting); one a message had let 50,000 small files pile up here, 19,700 of
        # them handed back at the end, while the parent planned a third of its folders
        for _ in msg[1]:
            if not tree.due:
                break
            conn.send(("written", tree.idle()))
    elif msg[0] == "adopt":  # files the parent planned, for a worker out of them
        tree.adopt(msg[1])
    elif msg[0] == "link":  # a slice of the hard-link group members (restoretail.py)
        conn.send(("linked", *make_links(msg[1])))
    elif msg[0] == "flush":  # with what the parent holds: it takes back half the difference
        # however many files that is: capped at a batch (1,000), a restore of 20,000 files
        # of 34 KB had its parent wait 0.3 s of 2.4 for the worker's last ones
        spare = (tree.cost - msg[1]) // 2
        conn.send(("spare", tree.give(spare, most=len(tree.pending))))
        conn.send(("flushed", tree.finish()))


def main(argv: list[str]) -> int:
    malloctune.one_arena()  # before the first writing thread (the module says why)
    return serve_main(argv, _serve)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

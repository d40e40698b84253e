"""The end of a restore by subtrees (``restoretree.py``) shared with its workers: the other
members of hard-link groups linked to each group's first once every file is written.  Done
by the parent alone, after the workers had finished, a restore of 10,000 files with 10,000
more names linked to them spent 0.2 s of its 1.4 s linking them while the worker waited;
now each process takes a slice (0.14-0.16 s: the kernel's work per link grows when two
processes link at once).

The folders' metadata, the other serial step there, stays with the parent: shared the same
way it took as long (25,000 files in 13,000 folders: 0.28 s), the worker's slice of nodes
costing 40 ms to send and each folder's metadata more kernel time with two at work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from strongroom.files.longpath import on_paths

if TYPE_CHECKING:
    from strongroom.files.workerproc import WorkerProcess

Link = tuple[bytes, bytes, bytes]  # folder, name, the destination of the group's first member
Failure = tuple[bytes, str]  # a destination and what went wrong there

# Fewer than this many links are not worth a message to each worker.
_SHARE_FROM = 256


def make_links(links: Sequence[Link]) -> tuple[int, list[Failure]]:
    """Each name made a hard link to its group's first member (in place already); the
    number made and what failed."""
    made, failed = 0, []
    for folder, name, first in links:
        dest = os.path.join(folder, name)
        try:
            on_paths(os.link, first, dest)
        except OSError as exc:
            failed.append((dest, f"cannot create hard link: {exc.strerror}"))
            continue
        made += 1
    return made, failed


def links_shared(workers: Sequence[WorkerProcess], links: list[Link]) -> tuple[int, list[Failure]]:
    """:func:`make_links` in slices, one for each worker and the last one here (all of them
    here when there are too few to share); the number made and what failed."""
    if len(links) < _SHARE_FROM or not workers:
        return make_links(links)
    size = -(-len(links) // (len(workers) + 1))
    for k, w in enumerate(workers):
        w.send(("link", links[k * size : (k + 1) * size]))
    made, failed = make_links(links[len(workers) * size :])
    for w in workers:
        reply = w.next_reply()
        if reply[0] != "linked":
            raise w.failure(reply)
        made += reply[1]
        failed += reply[2]
    return made, failed

"""Named crash points for the crash tests: ``kill -9`` at a chosen moment, from inside.

The environment variable ``STRONGROOM_FAILPOINT`` names one point, optionally with the hit
count at which to fire (``pack-write`` fires at the first hit, ``pack-write@3`` at the third).
When execution reaches :func:`hit` with that name the process sends itself SIGKILL: no
``finally`` blocks, no flushing, exactly like a power cut for everything above the kernel.
Unset (the normal case), a hit costs one dictionary lookup.

With ``STRONGROOM_FAILPOINT_PAUSE=PATH`` the selected hit pauses instead: it creates the file
``PATH`` and waits until someone removes it (at most :data:`PAUSE_LIMIT` seconds), then goes
on.  A test then knows exactly where the process is, e.g. to send it SIGINT mid-upload.

Points (where they sit, and what a crash there must leave intact):

========================  ==================================================================
``pack-write``            local backend, half of a pack written to its temporary file
``pack-segment``          a streamed pack: before a segment goes to its temporary file
``after-packs``           writer flush: every pack uploaded, no index object yet
``after-index``           ``save_point``: packs and index durable, the point not yet written
``prune-after-points``    prune: expired points deleted, no data touched yet
``prune-after-repack``    prune: repacked chunks stored and indexed, old index still there
``repack-before-delete``  prune: the new index written, nothing old deleted yet
``prune-mid-delete``      prune: some of the old index objects and packs deleted
``repair-after-index``    check --repair: the rebuilt index written, old index still there
``image-backup-chunk``    image backup: a chunk read from the disk (qemu-nbd serving it)
``image-restore-chunk``   disk restore: a chunk about to be written to the (temporary) image
``procwork-dir``          files backup worker process: a folder to list received
``restorework-batch``     files restore worker process: a batch of files to write received
``restore-rename``        files restore: a batch of files durable under temporary names, about
                          to be renamed into place (one hit per file)
``restore-tree-move``     files restore of a whole point into an empty target: the point durable
                          in the staging folder, a top-level entry about to be moved into the
                          target (one hit each)
========================  ==================================================================
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

ENV = "STRONGROOM_FAILPOINT"
PAUSE_ENV = "STRONGROOM_FAILPOINT_PAUSE"
PAUSE_LIMIT = 60.0
_hits: Counter[str] = Counter()
_lock = threading.Lock()


def hit(name: str) -> None:
    """SIGKILL this process if ``STRONGROOM_FAILPOINT`` selects this hit of ``name``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, nth = spec.partition("@")
    if want != name:
        return
    with _lock:
        _hits[name] += 1
        count = _hits[name]
    if count != (int(nth) if nth else 1):
        return
    pause = os.environ.get(PAUSE_ENV)
    if not pause:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    with open(pause, "w", encoding="ascii") as marker:
        marker.write(f"{os.getpid()} {name}\n")
    deadline = time.monotonic() + PAUSE_LIMIT
    while os.path.exists(pause) and time.monotonic() < deadline:
        time.sleep(0.01)

"""The cyclic garbage collector's settings for strongroom's own processes: the CLI
(:mod:`strongroom.cli.entry`) and the files engine's helper processes
(:mod:`strongroom.files.workermain`).

Both load with the collector off: a command loads some 300,000 objects (typer, the vault,
the engines) that live until it exits, and every full collection during start-up walked
all of them again.  When the work starts, :func:`start_work` freezes what was loaded
(``gc.freeze``: later collections skip it) and turns the collector on with :data:`THRESHOLD`.
"""

from __future__ import annotations

import gc

# The engines allocate a few containers per file (nodes, tuples, results) and free nearly all
# of them by reference counting; a cycle collection every 700 allocations (the default)
# stopped every thread for 0.07-0.09 s in all in a first backup of 20,000 files, every
# 10,000 for 0.01 s.
THRESHOLD = (10_000, 10, 10)


def start_work() -> None:
    """Freeze what start-up loaded and collect with :data:`THRESHOLD` from now on."""
    gc.freeze()
    gc.set_threshold(*THRESHOLD)
    gc.enable()

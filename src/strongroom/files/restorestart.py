"""When a files restore writes with worker processes (``restoreprocs.py``,
``restoretree.py``) rather than threads, and starting them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.files.restoretypes import RestoreOptions
from strongroom.files.target import has_entries
from strongroom.files.vaultview import RestoreVault
from strongroom.vault import RecoveryPoint

if TYPE_CHECKING:
    from strongroom.files.restoreprocs import ProcessContents

# Worker processes write the files when at least this many, of under this size on average,
# are to be written: fewer do not repay the workers' start-up (about 0.3 s of CPU each), and
# big files decompress in parallel on threads already.
_PROCESS_FILES = 3000
_PROCESS_AVERAGE = 1 << 20


def worth_processes(files: int, average: float) -> bool:
    """Whether ``files`` files of ``average`` bytes repay worker processes."""
    return files >= _PROCESS_FILES and average < _PROCESS_AVERAGE


def start_processes(
    vault: RestoreVault, requested: int | None, spare: int = 0
) -> ProcessContents | None:
    """Worker processes for a restore's files (None: not on this storage, or one core); one
    per core but ``spare``, for the cores of a parent that writes too."""
    from strongroom import malloctune
    from strongroom.files.cores import process_count
    from strongroom.files.restoreprocs import ProcessContents

    count = process_count(requested, spare=spare)
    handoff = vault.handoff() if count else None
    if handoff is None:
        return None
    malloctune.one_arena()  # memory the threads' own arenas would keep (the module says why)
    return ProcessContents(handoff, count)


def early_processes(
    vault: RestoreVault, point: RecoveryPoint, opts: RestoreOptions, target: bytes
) -> ProcessContents | None:
    """Workers started before the plan is made, when the whole of a big point of small
    files is restored (its summary says so): their start-up then overlaps the planning.
    Into an empty target the restore goes by subtrees and the parent writes too
    (``restoretree.py``): one worker per core but one."""
    if opts.dry_run or opts.selectors or opts.processes == 0:
        return None
    if opts.processes is not None:  # asked for: whatever the point's size
        return start_processes(vault, opts.processes)
    summary = point.manifest.summary
    files, size = summary.get("files"), summary.get("logical_bytes")
    if not isinstance(files, int) or not isinstance(size, int) or files == 0:
        return None
    if not worth_processes(files, size / files):
        return None
    return start_processes(vault, opts.processes, spare=0 if has_entries(target) else 1)

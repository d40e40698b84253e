"""File-level backup and restore (the agent's engine).

Back up chosen paths with full metadata into a ``files`` recovery point (one tree chunk per
directory), incrementally through a local files cache; browse, compare and restore any subset
to any folder.  See ``docs/files.md``.

Names are imported on first use (PEP 562), as in :mod:`strongroom.vault`: a restore does not
load the backup side (chunking and its ``fastcdc``/``click``, the SQLite files cache), which
keeps its memory lower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strongroom.lazyexports import lazy_exports

if TYPE_CHECKING:
    from strongroom.files.backup import backup_files
    from strongroom.files.backuptypes import BackupOptions, BackupSummary
    from strongroom.files.browse import (
        find_in_points,
        list_point,
        long_line,
        node_doc,
        shown_path,
    )
    from strongroom.files.diff import Change, diff_live, diff_points
    from strongroom.files.nodes import Node, decode_dir, encode_dir
    from strongroom.files.patterns import PatternSet, read_pattern_file
    from strongroom.files.plan import CONFLICT_POLICIES
    from strongroom.files.restore import restore_files
    from strongroom.files.restoretypes import RestoreOptions, RestoreSummary
    from strongroom.files.warmstart import WarmWorkers

_HOME = {
    "CONFLICT_POLICIES": "plan",
    "BackupOptions": "backuptypes",  # not "backup": the CLI makes them before the key is derived
    "BackupSummary": "backuptypes",
    "Change": "diff",
    "Node": "nodes",
    "PatternSet": "patterns",
    "RestoreOptions": "restoretypes",
    "RestoreSummary": "restoretypes",
    "WarmWorkers": "warmstart",
    "backup_files": "backup",
    "decode_dir": "nodes",
    "diff_live": "diff",
    "diff_points": "diff",
    "encode_dir": "nodes",
    "find_in_points": "browse",
    "list_point": "browse",
    "long_line": "browse",
    "node_doc": "browse",
    "read_pattern_file": "patterns",
    "restore_files": "restore",
    "shown_path": "browse",
}

__all__ = [
    "CONFLICT_POLICIES",
    "BackupOptions",
    "BackupSummary",
    "Change",
    "Node",
    "PatternSet",
    "RestoreOptions",
    "RestoreSummary",
    "WarmWorkers",
    "backup_files",
    "decode_dir",
    "diff_live",
    "diff_points",
    "encode_dir",
    "find_in_points",
    "list_point",
    "long_line",
    "node_doc",
    "read_pattern_file",
    "restore_files",
    "shown_path",
]


__getattr__, __dir__ = lazy_exports(__name__, _HOME, __all__)

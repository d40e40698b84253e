"""File-level backup and restore (the agent's engine).

Back up chosen paths with full metadata into a ``files`` recovery point (one tree chunk per
directory), incrementally through a local files cache; browse, compare and restore any subset
to any folder.  See ``docs/files.md``.
"""

from strongroom.files.backup import BackupOptions, BackupSummary, backup_files
from strongroom.files.browse import find_in_points, list_point, long_line, node_doc
from strongroom.files.diff import Change, diff_live, diff_points
from strongroom.files.nodes import Node, decode_dir, encode_dir
from strongroom.files.patterns import PatternSet, read_pattern_file
from strongroom.files.plan import CONFLICT_POLICIES
from strongroom.files.restore import RestoreOptions, RestoreSummary, restore_files

__all__ = [
    "CONFLICT_POLICIES",
    "BackupOptions",
    "BackupSummary",
    "Change",
    "Node",
    "PatternSet",
    "RestoreOptions",
    "RestoreSummary",
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
]

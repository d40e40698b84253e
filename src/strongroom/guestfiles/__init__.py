"""Files inside image points: volumes, filesystems, browse, compare and restore.

Joins :mod:`strongroom.image` (disk records, chunk maps) and :mod:`strongroom.files` (nodes,
restore planning, metadata); neither of those imports this.  See ``docs/image-files.md``.
"""

def read_small(
    path: bytes,
    buffer: memoryview | bytearray,
    size: int,
    ino: int,
    mtime_ns: int,
    ctime_ns: int,
    noatime: bool,
    /,
) -> tuple[int, int, int, list[tuple[bytes, bytes]], int] | None: ...

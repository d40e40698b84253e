from mmap import mmap

def sort_keys(
    rows: mmap | bytes | bytearray | memoryview,
    keys: mmap | bytearray | memoryview,
    start: int,
    n: int,
    /,
) -> None: ...

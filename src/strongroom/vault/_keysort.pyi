from mmap import mmap

def sort_keys(
    rows: mmap | bytes | bytearray | memoryview,
    keys: mmap | bytearray | memoryview,
    start: int,
    n: int,
    /,
) -> None: ...
def find_rows(
    rows: mmap | bytes | bytearray | memoryview,
    keys: mmap | bytes | bytearray | memoryview,
    n: int,
    ids: bytes | bytearray | memoryview,
    /,
) -> list[int]: ...

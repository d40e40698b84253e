from mmap import mmap

TABLE_BYTES: int
SEGMENT_SLOTS: int
SEGMENTS: int
MIN_BYTES: int

def claim(table: mmap | bytearray, chunk_id: bytes, /) -> int: ...
def segments_used(table: mmap | bytearray, /) -> int: ...

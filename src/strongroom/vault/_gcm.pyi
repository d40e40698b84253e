from mmap import mmap

ENGINE: str

def encrypt(
    key: bytes,
    nonce: bytes | bytearray | memoryview,
    data: bytes | bytearray | memoryview,
    aad: bytes | bytearray | memoryview,
    /,
) -> bytes: ...
def encrypt_into(
    key: bytes,
    nonce: bytes | bytearray | memoryview,
    data: bytes | bytearray | memoryview,
    aad: bytes | bytearray | memoryview,
    out: memoryview | bytearray | mmap,
    offset: int = ...,
    /,
) -> None: ...
def decrypt(
    key: bytes,
    nonce: bytes | bytearray | memoryview,
    sealed: bytes | bytearray | memoryview,
    aad: bytes | bytearray | memoryview,
    /,
) -> bytes | None: ...
def seal_blob(
    key: bytes,
    number: int,
    chunk_id: bytes,
    ctype: int,
    flags: int,
    raw: int,
    payload: bytes | bytearray | memoryview,
    out: memoryview | bytearray | mmap,
    offset: int,
    entries: bytearray,
    base: int,
    /,
) -> int: ...

import os

def list_folder(
    fd: int, skip: bytes, symlinks_apart: bool, /
) -> list[tuple[bytes, os.stat_result | int | None]]: ...

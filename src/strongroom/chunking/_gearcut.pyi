from collections.abc import Sequence

from strongroom.chunking._buffers import BytesLike

def set_gear(table: Sequence[int], /) -> None: ...
def cuts(
    buffer: BytesLike, min_size: int, max_size: int, center: int, mask_s: int, mask_l: int, /
) -> list[int]: ...

"""Child process for the crash test: writes points into a local vault until killed."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from strongroom.storage import LocalBackend
from strongroom.vault import Vault
from tests.constants import PASSPHRASE
from tests.vault.helpers import write_point


def main(root: str, seed: int) -> None:
    vault = Vault.open(LocalBackend(Path(root)), PASSPHRASE)
    rng = random.Random(seed)
    n = 0
    while True:
        datas = [rng.randbytes(rng.randrange(1, 400_000)) for _ in range(rng.randrange(1, 12))]
        point = write_point(vault, datas, source=f"crash-{seed}")
        # The parent checks every point that was committed against these seeds.
        print(point.point.point_id, seed, n, flush=True)
        n += 1


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

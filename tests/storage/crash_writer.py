"""Child process of the crash test: writes content-addressed objects until it is killed.

Each object's name is the SHA-256 of its content, so the parent can check every object that
carries a final name.  A line ``done NAME`` is printed after each put returns.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

from strongroom.storage.local import LocalBackend

MIB = 1024 * 1024


def main() -> None:
    backend = LocalBackend(Path(sys.argv[1]))
    rng = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        data = rng.randbytes(rng.randrange(1, 6 * MIB))
        digest = hashlib.sha256(data).hexdigest()
        name = f"data/{digest[:2]}/{digest}"
        backend.put(name, data)
        print(f"done {name}", flush=True)


if __name__ == "__main__":
    main()

"""The ``strongroom`` command line (typer); see :mod:`strongroom.cli.main`."""

import os

# strongroom does no linear algebra, but numpy's OpenBLAS starts a thread per core at import
# and its idle threads cost CPU and memory: one is enough.  Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

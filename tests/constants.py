"""Constants shared by tests and by the child processes they start (which must not import
pytest: its import alone took over a second on a loaded machine, longer than the crash tests
give a child to commit its first point)."""

from __future__ import annotations

from strongroom.vault import KDFParams

# Argon2id at its cheapest: the tests open vaults hundreds of times.
FAST_KDF = KDFParams(time_cost=1, memory_kib=1024, parallelism=1)
PASSPHRASE = "correct horse battery staple"

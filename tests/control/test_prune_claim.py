"""The prune claim's SQL on both catalogs: only the machine the vault's prune schedule names
gets the job, once, and not while the vault's verify runs (PostgreSQL: a real cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strongroom.server.catalog import Catalog
from strongroom.server.control.jobs import Jobs
from strongroom.server.control.prunejobs import Pruner
from strongroom.server.run import init_catalog
from strongroom.server.vaults import VaultRegistry
from tests.control.postgres import new_database, postgres_cluster


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        made = Catalog(tmp_path, create=True)
        yield made
        made.close()
        return
    with postgres_cluster() as base:
        init_catalog(tmp_path, new_database(base, "prune"))
        made = Catalog(tmp_path)
        yield made
        made.close()


def test_only_the_designated_machine_claims_once(catalog: Catalog) -> None:
    jobs = Jobs(catalog)
    pruner = Pruner(catalog, VaultRegistry(catalog), jobs)
    with catalog.tx() as db:
        for name in ("keeper", "other"):
            db.execute("INSERT INTO machines (name, token, created) VALUES (?, ?, 0)", (name, name))
        db.execute(
            "INSERT INTO prune_schedules (vault, prune, machine, grace_hours, next_prune, created)"
            " VALUES ('v', '*:*', 'keeper', 0, NULL, 0)"
        )
        verify = jobs.enqueue(db, "vault:v", "verify", 1.0, 1.0, {"vault": "v"})
        prune = jobs.enqueue(db, "vault:v", "prune", 1.0, 1.0, {"vault": "v", "grace_hours": 0})
        db.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (verify,))
    assert pruner.claim("keeper", 2.0) is None  # the vault's verify runs
    with catalog.tx() as db:
        db.execute("UPDATE jobs SET state = 'succeeded' WHERE id = ?", (verify,))
    assert pruner.claim("other", 2.0) is None
    found = pruner.claim("keeper", 2.0)
    assert found is not None and found[0].id == prune and found[0].agent == "keeper"
    assert found[1] == {
        "job": prune, "kind": "prune", "item": "vault:v", "vault": "v", "grace_hours": 0
    }  # fmt: skip
    assert pruner.claim("keeper", 3.0) is None  # running: never twice

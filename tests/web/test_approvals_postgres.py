"""Second-admin approvals with dashboard users on a PostgreSQL catalog: the same queries
(admin tokens that can act, admin users) and the same rules as on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strongroom.server.approvals import (
    PendingApproval,
    pending,
    request_change,
    token_actor,
    user_actor,
)
from strongroom.server.auth import ApiError, new_token
from strongroom.server.catalog import Catalog
from strongroom.server.web.users import add_user
from tests.control.postgres import new_database, postgres_cluster


def config(soft: int) -> bytes:
    doc = {"id": "ab" * 16, "settings": {"soft_delete_days": soft, "immutable_days": 0}}
    return json.dumps(doc).encode()


def test_admin_users_count_and_approve_on_postgresql(tmp_path: Path) -> None:
    with postgres_cluster() as base:
        catalog = Catalog(tmp_path, create=True, url=new_database(base, "approvals"))
        try:
            first = new_token("admin")
            catalog.add_token(first.row)
            for name, role in (("alice", "admin"), ("bob", "admin"), ("vic", "viewer")):
                add_user(catalog, name, role, f"{name}'s password", first.row.id)
            assert catalog.admin_users() == ["alice", "bob"]
            alice, bob = user_actor("alice"), user_actor("bob")
            with pytest.raises(PendingApproval) as waiting:
                request_change(catalog, "v", alice, "config", config(30), config(7))
            row = waiting.value.approval
            assert row.requested_by == "user:alice"
            own = new_token("admin", created_by="user:alice")
            catalog.add_token(own.row)
            for refused in (alice, token_actor(own.row)):
                with pytest.raises(ApiError) as exc:
                    pending(catalog, row.id, refused)
                assert exc.value.status == 403
            assert pending(catalog, row.id, bob) == row
            assert pending(catalog, row.id, token_actor(first.row)) == row

            # alice and her own token alone: nobody else could approve, nobody is asked
            with catalog.tx() as db:
                db.execute("UPDATE users SET role = 'viewer' WHERE name = 'bob'")
            catalog.revoke_token(first.row.id)
            request_change(catalog, "v", alice, "config", config(30), config(1))
            request_change(catalog, "v", token_actor(own.row), "config", config(30), config(1))
        finally:
            catalog.close()

"""Schemathesis: the API against its own OpenAPI schema, with valid admin and backup tokens.

In-process (ASGI), against a catalog of its own with one vault: no 5xx and no response that
its schema does not declare.  Bounded: 15 examples per operation and token, a few hundred in
all.  (schemathesis' pytest plugin does not run on pytest 9 yet, so Hypothesis drives it.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from strongroom.server.app import Server, create_app  # noqa: E402
from strongroom.server.auth import new_token  # noqa: E402
from strongroom.server.catalog import Catalog  # noqa: E402

EXAMPLES = 15
# Not positive_data_acceptance: the schema cannot say that a pack's bytes must hash to its
# name, so a schema-valid request may rightly get 400.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _server(data: Path) -> tuple[Server, dict[str, str]]:
    catalog = Catalog(data, create=True)
    tokens = {}
    for role in ("admin", "backup"):
        made = new_token(role)
        catalog.add_token(made.row)
        tokens[role] = made.secret
    catalog.add_vault("v", str(data / "vaults" / "v"))
    catalog.close()
    return Server(data), tokens


@pytest.mark.parametrize("role", ["admin", "backup"])
def test_api_conforms_to_its_schema(tmp_path: Path, role: str) -> None:
    server, tokens = _server(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(server))
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    try:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                if "vault" in (case.path_parameters or {}):
                    case.path_parameters["vault"] = "v"  # the vault that exists: deeper
                case.call_and_validate(headers=headers, checks=CHECKS)

            check()
    finally:
        server.close()

"""``GET /openapi.json``, and schemathesis against it on a live server (both backends): no 5xx,
every answer matching its documented status, headers and schema, and nothing stored by a
request that was refused (every table's row count is the same after a 4xx as before it)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from starlette.routing import Route

from gateway import openapi
from gateway.app import create_app
from gateway.settings import PROVIDERS, Settings
from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import connect
from sql.migrations import discover
from tests.conftest import (
    FIXTURES,
    TABLES,
    _truncate,
    rows,
    run_blocking,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.fault

ADMIN_TOKEN = "admin-test-token"
CRON_SECRET = "cron-test-secret"
WEBHOOK = "/webhooks/{provider}/{workspace_id}"
# Every table a request may write, but the two the delivery stats' flusher writes every few
# seconds, whichever request is being answered then (and every answer, a refusal too, counts).
COUNT_ROWS = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM {table}) AS {table}"
    for table in TABLES.split(", ")
    if table not in ("delivery_stats", "message_copies")
)


@dataclasses.dataclass
class Target:
    """A live server, its database, a workspace with a token per provider, and the row counts
    after the last request."""

    base_url: str
    database_url: str
    workspace_id: str
    tokens: dict[str, str]
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def count_rows(self) -> dict[str, int]:
        [found] = run_blocking(rows(self.database_url, COUNT_ROWS))
        return {table: int(n) for table, n in found.items()}


async def _prepare(database_url: str) -> tuple[str, dict[str, str]]:
    db = await connect(database_url)
    try:
        await db.apply_migrations(discover(db.dialect))
        workspace = await create_workspace(db, "Acme", WorkspaceOptions(slack_channel="#r"))
    finally:
        await db.close()
    return workspace.id, workspace.tokens


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'hookgate.db'}"
    else:
        database_url = request.getfixturevalue("pg_url")
        run_blocking(_truncate(database_url))
    workspace_id, tokens = run_blocking(_prepare(database_url))
    env = {
        "DATABASE_URL": database_url,
        "HOOKGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CRON_SECRET": CRON_SECRET,
        "HOOKGATE_SCHEDULER": "0",  # only requests change rows
        "LOG_LEVEL": "WARNING",
    }
    server = start_server(env)
    try:
        assert httpx2.get(f"{server.base_url}/openapi.json").json() == DOCUMENT
        found = Target(server.base_url, database_url, workspace_id, tokens)
        found.counts = found.count_rows()
        yield found
    finally:
        stop_server(server)


# The document the app serves, built from its routes (no database needed); each test case is
# sent to the live server, whose /openapi.json is checked to be this same document.
DOCUMENT = openapi.document(create_app(Settings()).routes)
SAMPLES = {
    provider: [
        json.loads(path.read_bytes())
        for path in sorted(
            (FIXTURES / {"ghl": "gohighlevel"}.get(provider, provider)).glob("*.json")
        )
    ]
    for provider in PROVIDERS
}
CONFIG = SchemathesisConfig.from_dict(
    {
        # A valid request may meet a state that refuses it: 422 is such an answer (a quarantined
        # delivery the parser still cannot read), not a rejection of valid data.
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
            }
        },
        # The real credentials go with each call (see _credentials); none are made up.
        "generation": {"with-security-parameters": False},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def _aim(case: Any, target: Target, data: st.DataObject) -> dict[str, str]:
    """Point some cases at the real workspace (else every webhook and workspace route would only
    ever be refused), a webhook sometimes with one of the provider's sample payloads; return the
    query a caller who knows the provider's token adds.  A case made invalid anywhere but in its
    body is left as generated: aiming it would make it valid."""
    invalid = {
        where for where in ParameterLocation if case.meta and case.meta.is_negative_at(where)
    }
    if invalid - {ParameterLocation.BODY} or not data.draw(st.booleans(), label="aim"):
        return {}
    path_parameters = case.path_parameters or {}
    if case.path.startswith("/api/workspaces/"):
        case.path_parameters = {**path_parameters, "id": target.workspace_id}
    provider = path_parameters.get("provider")
    if case.path != WEBHOOK or provider not in target.tokens:
        return {}
    case.path_parameters = {**path_parameters, "workspace_id": target.workspace_id}
    if not invalid:
        case.body = data.draw(st.sampled_from([case.body, *SAMPLES[provider]]), label="body")
    return {"token": target.tokens[provider]}


def _credentials(case: Any) -> dict[str, str]:
    """The admin token and the cron secret, sent with the call rather than put in the case, so
    that schemathesis knows them for real ones and checks that the same request without them,
    or with wrong ones, is refused."""
    if case.path.startswith("/api/"):
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if case.path.startswith("/cron/"):
        return {"Authorization": f"Bearer {CRON_SECRET}"}
    return {}


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_documented_and_a_refusal_stores_nothing(
    case: Any, data: st.DataObject, target: Target
) -> None:
    params = _aim(case, target, data)
    headers = _credentials(case)
    response = case.call(base_url=target.base_url, headers=headers, params=params)
    before, target.counts = target.counts, target.count_rows()
    if response.status_code >= 400:
        assert target.counts == before, f"{case.method} {case.formatted_path} stored rows"
    case.validate_response(response, headers=headers, transport_kwargs={"params": params})


async def test_the_document_describes_every_api_and_webhook_route(tmp_path: Path) -> None:
    app = create_app(Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"}))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    served = {
        re.sub(r":\w+}", "}", route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith(("/api/", "/webhooks/", "/cron/"))
    }
    assert served - set(document["paths"]) == set()
    assert document["components"]["schemas"]["Provider"]["enum"] == list(PROVIDERS)

"""Property-based fuzzing of every webhook route: random bytes, random JSON and mutated provider
fixtures, with random auth headers and a right or wrong token.  Whatever arrives: never a 5xx,
and a delivery that is not answered 200 leaves no message, lead, job or health row behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import AppClient, fixture_json, rows

FIXTURES = {
    "emailbison": ["emailbison/lead_replied.json", "emailbison/email_sent.json"],
    "ghl": [
        "gohighlevel/inbound_message_sms.json",
        "gohighlevel/workflow_webhook_customer_replied_sms.json",
    ],
    "unipile": ["unipile/message_received_inbound.json", "unipile/account_status_credentials.json"],
    "smartlead": ["smartlead/email_reply.json", "smartlead/email_sent.json"],
    "instantly": ["instantly/reply_received.json", "instantly/email_sent.json"],
}
STATE_TABLES = ("messages", "leads", "background_jobs", "integration_health")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
headers = st.dictionaries(
    st.sampled_from(
        ["Authorization", "Unipile-Auth", "X-GHL-Signature", "X-Hookgate-Secret", "Content-Type"]
    ),
    header_text,
    max_size=3,
)


def paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the nested objects in ``value``."""
    found: list[tuple[str, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*prefix, key))
            found.extend(paths(child, (*prefix, key)))
    return found


@st.composite
def mutated_fixture(draw: st.DrawFn, provider: str) -> bytes:
    payload = fixture_json(draw(st.sampled_from(FIXTURES[provider])))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths(payload) or [("x",)]))
        parent = payload
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return json.dumps(payload).encode()


def bodies(provider: str) -> st.SearchStrategy[bytes]:
    return (
        mutated_fixture(provider)
        | json_values.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=64)
    )


async def snapshot(config: Settings) -> dict[str, Any]:
    """Row counts of the tables a delivery can write, in one query."""
    columns = ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in STATE_TABLES)
    [counts] = await rows(config.database_url, f"SELECT {columns}")
    return counts


@pytest.mark.parametrize("provider", list(FIXTURES))
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), extra=headers, good_token=st.booleans())
async def test_no_delivery_ever_gets_a_5xx_and_rejections_store_nothing(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    provider: str,
    data: st.DataObject,
    extra: dict[str, str],
    good_token: bool,
) -> None:
    body = data.draw(bodies(provider), label="body")
    before = await snapshot(settings)
    url = client.url(provider, workspace, token=None if good_token else "wrong-token")
    answer = await client.http.post(url, content=body, headers=extra)
    assert answer.status_code < 500, answer.text
    assert answer.json()["success"] is (answer.status_code in (200, 202))
    if not good_token:
        # A wrong token, and no header secret configured: nothing can authenticate it.
        assert answer.status_code == 401
    if answer.status_code != 200:
        assert await snapshot(settings) == before


@pytest.mark.parametrize("provider", ["ghl", "unipile", "smartlead", "instantly"])
async def test_nul_characters_are_dropped_rather_than_failing_postgres(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, provider: str
) -> None:
    text = json.dumps(fixture_json(FIXTURES[provider][0]))
    poisoned = text.replace("Jordan", "Jor\\u0000dan").replace("interested", "inte\\u0000rested")
    answer = await client.http.post(client.url(provider, workspace), content=poisoned.encode())
    assert answer.status_code == 200, answer.text
    assert (await snapshot(settings))["messages"] == 1


@pytest.mark.parametrize("provider", list(FIXTURES))
async def test_a_body_one_byte_under_the_limit_is_stored(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, provider: str
) -> None:
    payload = fixture_json(FIXTURES[provider][0])
    payload["padding"] = ""  # providers merge unknown keys in; parsers must not mind
    size = len(json.dumps(payload).encode())
    payload["padding"] = "x" * (settings.webhook_max_body_bytes - 1 - size)
    body = json.dumps(payload).encode()
    assert len(body) == settings.webhook_max_body_bytes - 1
    answer = await client.http.post(client.url(provider, workspace), content=body)
    assert answer.status_code == 200, answer.text
    state = await snapshot(settings)
    assert state["messages"] + state["integration_health"] == 1

"""The webhook quarantine on the live path: unreadable deliveries kept (202), replayed exactly once
after the parser is fixed, the flood guard, the rejections that still store nothing, and no
secret kept in a row's headers or shown from its body."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from gateway import quarantine
from gateway.events import Event
from gateway.providers import PROVIDERS, Delivery
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import AppClient, app_client, count, encode, fixture_json, make_settings, rows

REPLIED = "emailbison/lead_replied.json"
SMARTLEAD_SECRET = "sl-secret-123"
Parse = Callable[[dict[str, Any], Delivery], Event]


def renamed_reply(marker: int | None = None) -> bytes:
    """EmailBison's reply with ``id`` renamed ``reply_id``, as a provider might ship one day.
    ``marker`` makes distinct bodies (a field the parser ignores)."""
    payload = fixture_json(REPLIED)
    reply = payload["data"]["reply"]
    reply["reply_id"] = reply.pop("id")
    if marker is not None:
        payload["marker"] = marker
    return encode(payload)


def override_parser(
    monkeypatch: pytest.MonkeyPatch, name: str, wrap: Callable[[Parse], Parse]
) -> None:
    """Register a changed parser for provider ``name`` for this test only: the live path and
    replay both look providers up in ``gateway.providers.PROVIDERS`` at call time."""
    original = PROVIDERS[name]
    monkeypatch.setitem(PROVIDERS, name, dataclasses.replace(original, parse=wrap(original.parse)))


def learns_reply_id(parse: Parse) -> Parse:
    """The fix: EmailBison's parser now also reads ``data.reply.reply_id``."""

    def fixed(payload: dict[str, Any], delivery: Delivery) -> Event:
        data = payload.get("data")
        reply = data.get("reply") if isinstance(data, dict) else None
        if isinstance(reply, dict) and "id" not in reply and "reply_id" in reply:
            payload = {**payload, "data": {**data, "reply": {**reply, "id": reply["reply_id"]}}}
        return parse(payload, delivery)

    return fixed


def quarantined(answer: httpx2.Response) -> int:
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["success"] is True and body["quarantined"] is True
    return int(body["delivery_id"])


async def test_renamed_field_is_quarantined_then_replayed_into_exactly_one_message(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = settings.database_url
    delivery_id = quarantined(
        await client.http.post(client.url("emailbison", workspace), content=renamed_reply())
    )
    assert await count(url, "messages") == 0
    assert await count(url, "background_jobs") == 0
    assert await count(url, "leads") == 0
    [row] = await rows(url, "SELECT * FROM webhook_quarantine")
    assert (row["id"], row["workspace_id"], row["provider"], row["status"]) == (
        delivery_id,
        workspace.id,
        "emailbison",
        "pending",
    )
    assert "data.reply.id is missing" in row["error"]
    assert bytes(row["raw_body"]) == renamed_reply()

    # Replayed before the fix: still unreadable, still pending, nothing stored.
    before = await quarantine.replay(db, settings, delivery_id)
    assert before is not None and not before.ok and before.status == "pending"
    assert "data.reply.id is missing" in (before.error or "")
    assert await count(url, "messages") == 0

    override_parser(monkeypatch, "emailbison", learns_reply_id)
    first = await quarantine.replay(db, settings, delivery_id)
    assert first is not None and first.ok
    assert (first.status, first.event, first.message_id, first.deduped) == (
        "replayed",
        "LEAD_REPLIED",
        1,
        False,
    )
    [message] = await rows(url, "SELECT * FROM messages")
    assert (message["id"], message["email_bison_reply_id"]) == (1, "1608263")
    jobs = await rows(url, "SELECT type, message_id FROM background_jobs")
    assert jobs == [{"type": "EMAIL_INBOUND_POST_PROCESS", "message_id": 1}]
    [row] = await rows(url, "SELECT status, replayed_message_id FROM webhook_quarantine")
    assert row == {"status": "replayed", "replayed_message_id": 1}

    second = await quarantine.replay(db, settings, delivery_id)
    assert second is not None and second.ok
    assert (second.status, second.message_id, second.deduped) == ("replayed", 1, True)
    assert await count(url, "messages") == 1
    assert await count(url, "background_jobs") == 1

    # The provider's own retry of the same body is now a plain dedupe hit.
    retried = await client.http.post(client.url("emailbison", workspace), content=renamed_reply())
    assert retried.status_code == 200 and retried.json()["deduped"] is True


def _without(*path: str) -> bytes:
    payload = fixture_json(REPLIED)
    target = payload
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return encode(payload)


def _reply_not_an_object() -> bytes:
    payload = fixture_json(REPLIED)
    payload["data"]["reply"] = "not an object"
    return encode(payload)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (_without("event"), "event must be an object"),
        (_without("event", "type"), "event.type is missing"),
        (_without("data", "reply", "id"), "data.reply.id is missing"),
        (_reply_not_an_object(), "data.reply must be an object"),
        (encode({}), "event must be an object"),
    ],
    ids=["no-event", "no-type", "no-id", "mistyped", "empty-object"],
)
async def test_every_object_the_parser_cannot_read_is_quarantined_naming_what_is_wrong(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, content: bytes, error: str
) -> None:
    quarantined(await client.http.post(client.url("emailbison", workspace), content=content))
    [row] = await rows(settings.database_url, "SELECT error FROM webhook_quarantine")
    assert error in row["error"]
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "background_jobs") == 0


async def test_fifty_identical_unreadable_deliveries_at_once_are_one_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = client.url("emailbison", workspace)
    content = renamed_reply()
    answers = await asyncio.gather(*(client.http.post(url, content=content) for _ in range(50)))
    assert {quarantined(answer) for answer in answers} == {1}
    assert await count(settings.database_url, "webhook_quarantine") == 1
    assert await count(settings.database_url, "messages") == 0
    # Only a new row claims (or adds to) the day's alert.
    [alert] = await rows(settings.database_url, "SELECT kind, suppressed FROM alerts")
    assert alert == {"kind": "quarantine", "suppressed": 0}


async def test_flood_guard_refuses_the_delivery_past_the_hourly_limit_and_stores_nothing(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, QUARANTINE_MAX_PER_HOUR="3", HOOKGATE_SCHEDULER="0")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        ids = [quarantined(await client.http.post(url, content=renamed_reply(i))) for i in range(3)]
        assert ids == [1, 2, 3]
        refused = await client.http.post(url, content=renamed_reply(3))
        assert refused.status_code == 400
        assert refused.json()["success"] is False
        assert "QUARANTINE_MAX_PER_HOUR" in refused.json()["error"]
        assert "data.reply.id is missing" in refused.json()["error"]
        assert await count(database_url, "webhook_quarantine") == 3
        # A repeat of a kept delivery is not a new row: still answered with its id.
        assert quarantined(await client.http.post(url, content=renamed_reply(0))) == 1
        # Another workspace has its own budget.
        other = await create_workspace(db, "Other", WorkspaceOptions())
        quarantined(
            await client.http.post(client.url("emailbison", other), content=renamed_reply(3))
        )

        # An hour later the window has moved on.
        runtime = client.app.state.runtime
        later = runtime.clock() + dt.timedelta(minutes=61)
        runtime.clock = lambda: later
        quarantined(await client.http.post(url, content=renamed_reply(3)))
    assert await count(database_url, "webhook_quarantine") == 5
    assert await count(database_url, "messages") == 0


async def test_flood_guard_holds_under_a_storm_of_distinct_bodies(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, QUARANTINE_MAX_PER_HOUR="5", HOOKGATE_SCHEDULER="0")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        answers = await asyncio.gather(
            *(client.http.post(url, content=renamed_reply(i)) for i in range(40))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 5 + [400] * 35
    assert await count(database_url, "webhook_quarantine") == 5


@pytest.fixture
def ed25519_public_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


async def test_rejections_keep_their_old_answers_and_quarantine_nothing(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    db: Database,
    ed25519_public_key: str,
) -> None:
    url = client.url("emailbison", workspace)
    unreadable = renamed_reply()
    cases: list[tuple[str, bytes, dict[str, str], int]] = [
        (url, b"{not json", {}, 400),
        (url, b"[1, 2]", {}, 400),
        (url, b'{"event": "\xff\xfe"}', {}, 400),
        (client.url("emailbison", workspace, token="wrong"), unreadable, {}, 401),
        (url, b"x" * (settings.webhook_max_body_bytes + 1), {}, 413),
    ]
    signed = await create_workspace(
        db, "Signed", WorkspaceOptions(ghl_public_key=ed25519_public_key)
    )
    cases.append(
        (client.url("ghl", signed), b'{"unknown": "shape"}', {"X-GHL-Signature": "AAAA"}, 401)
    )
    secret = await create_workspace(db, "SL", WorkspaceOptions(smartlead_secret=SMARTLEAD_SECRET))
    wrong_secret = encode({"secret_key": "guess", "shape": "unknown"})
    cases.append((client.url("smartlead", secret), wrong_secret, {}, 401))
    for target, content, headers, status in cases:
        answer = await client.http.post(target, content=content, headers=headers)
        assert answer.status_code == status, (target, content[:20], answer.text)
        assert answer.json()["success"] is False
    assert await count(settings.database_url, "webhook_quarantine") == 0
    assert await count(settings.database_url, "alerts") == 0


@pytest.fixture
def smartlead_workspace_factory(db: Database) -> Callable[[], Any]:
    async def make() -> CreatedWorkspace:
        options = WorkspaceOptions(slack_channel="#replies", smartlead_secret=SMARTLEAD_SECRET)
        return await create_workspace(db, "SmartLead shop", options)

    return make


def unreadable_smartlead(marker: int = 0) -> bytes:
    """SmartLead's reply with ``event_type`` renamed, carrying the workspace's secret_key."""
    payload = fixture_json("smartlead/email_reply.json")
    payload["eventType"] = payload.pop("event_type")
    payload["secret_key"] = SMARTLEAD_SECRET
    payload["nested"] = {"api_token": "tok-nested-456", "marker": marker}
    return encode(payload)


SECRET_HEADERS = {
    "X-GHL-Signature": "sig-secret-value",
    "Unipile-Auth": "unipile-secret-value",
    "X-Api-Key": "api-key-secret-value",
    "X-Hookgate-Secret": "hookgate-secret-value",
    "Cookie": "session=cookie-secret-value",
}


async def test_no_secret_is_kept_in_headers_or_shown_from_the_body(
    client: AppClient,
    settings: Settings,
    db: Database,
    smartlead_workspace_factory: Callable[[], Any],
) -> None:
    ws: CreatedWorkspace = await smartlead_workspace_factory()
    token = ws.tokens["smartlead"]
    headers = {
        **SECRET_HEADERS,
        "Authorization": f"Bearer {token}",
        "User-Agent": "SmartLead-Webhooks/2",
        "X-Request-Id": "req-77",
    }
    answer = await client.http.post(
        client.url("smartlead", ws), content=unreadable_smartlead(), headers=headers
    )
    delivery_id = quarantined(answer)
    [row] = await rows(settings.database_url, "SELECT headers FROM webhook_quarantine")
    stored = row["headers"] if isinstance(row["headers"], str) else json.dumps(row["headers"])
    kept = json.loads(stored)
    assert kept["user-agent"] == "SmartLead-Webhooks/2"
    assert kept["x-request-id"] == "req-77"
    for secret in [token, *SECRET_HEADERS.values(), "cookie-secret-value"]:
        assert secret not in stored
    assert not {"authorization", "x-ghl-signature", "unipile-auth", "x-api-key", "cookie"} & set(
        kept
    )

    shown = await quarantine.show_delivery(db, delivery_id)
    assert shown is not None
    assert shown["body"]["secret_key"] == quarantine.MASK
    assert shown["body"]["nested"] == {"api_token": quarantine.MASK, "marker": 0}
    assert shown["body"]["eventType"] == "EMAIL_REPLY"
    assert "event_type is missing" in shown["error"]
    api = await client.http.get(
        f"/api/quarantine/{delivery_id}", headers={"Authorization": "Bearer admin-test-token"}
    )
    assert api.status_code == 200
    for text in (json.dumps(shown, default=str), api.text):
        for secret in (SMARTLEAD_SECRET, "tok-nested-456", token, *SECRET_HEADERS.values()):
            assert secret not in text


@pytest.fixture(autouse=True)
def _providers_restored() -> Iterator[None]:
    """Every parser override is the test's own (monkeypatch undoes it; this checks it did)."""
    before = dict(PROVIDERS)
    yield
    assert before == PROVIDERS

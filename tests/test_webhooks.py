"""The shared webhook path, through EmailBison: storage, dedupe, storms and every rejection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database, connect
from sql.migrations import discover
from tests.conftest import (
    AppClient,
    count,
    encode,
    fixture_bytes,
    fixture_json,
    rows,
    start_server,
    stop_server,
)

REPLIED = "emailbison/lead_replied.json"


def replied(reply_id: int | str = 1608263, event: str = "LEAD_REPLIED") -> bytes:
    payload = fixture_json(REPLIED)
    payload["event"]["type"] = event
    payload["data"]["reply"]["id"] = reply_id
    return encode(payload)


@pytest.mark.parametrize(
    ("fixture", "event", "direction", "column", "key", "lead_email", "job"),
    [
        (
            "emailbison/lead_replied.json",
            "LEAD_REPLIED",
            "inbound",
            "email_bison_reply_id",
            "1608263",
            "jordan.lee@northwind.example.com",
            "EMAIL_INBOUND_POST_PROCESS",
        ),
        (
            "emailbison/untracked_reply_received.json",
            "UNTRACKED_REPLY_RECEIVED",
            "inbound",
            "email_bison_reply_id",
            "1608301",
            "alex.morgan@contoso.example.com",
            "EMAIL_INBOUND_POST_PROCESS",
        ),
        (
            "emailbison/email_sent.json",
            "EMAIL_SENT",
            "outbound",
            "inboxxia_scheduled_email_id",
            "4410027",
            "jordan.lee@northwind.example.com",
            None,
        ),
    ],
)
async def test_every_fixture_is_stored_with_its_identity_lead_and_job(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    fixture: str,
    event: str,
    direction: str,
    column: str,
    key: str,
    lead_email: str,
    job: str | None,
) -> None:
    answer = await client.http.post(
        client.url("emailbison", workspace), content=fixture_bytes(fixture)
    )
    assert answer.status_code == 200
    assert answer.json() == {"success": True, "deduped": False, "event": event, "message_id": 1}

    url = settings.database_url
    [message] = await rows(url, "SELECT * FROM messages")
    assert message["workspace_id"] == workspace.id
    assert (message["channel"], message["direction"], message["provider"]) == (
        "email",
        direction,
        "emailbison",
    )
    assert message["event"] == event
    assert message[column] == key
    others = {"email_bison_reply_id", "inboxxia_scheduled_email_id", "ghl_id", "ai_draft_id"}
    assert all(message[c] is None for c in others - {column})
    assert message["body"] and message["subject"]
    [lead] = await rows(url, "SELECT * FROM leads")
    assert (lead["id"], lead["email"], lead["workspace_id"]) == (
        message["lead_id"],
        lead_email,
        workspace.id,
    )
    # The job's status is the scheduler's business (it may already have run); its identity is ours.
    jobs = await rows(url, "SELECT type, dedupe_key, message_id FROM background_jobs")
    if job is None:
        assert jobs == []
    else:
        assert jobs == [{"type": job, "dedupe_key": f"{job}:1", "message_id": 1}]


async def test_lead_fields_come_from_the_payload(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    await client.http.post(client.url("emailbison", workspace), content=fixture_bytes(REPLIED))
    [lead] = await rows(settings.database_url, "SELECT * FROM leads")
    assert (lead["first_name"], lead["last_name"], lead["company"], lead["title"]) == (
        "Jordan",
        "Lee",
        "Northwind Traders",
        "VP Talent",
    )


async def test_a_hundred_identical_deliveries_at_once_store_one_message_and_one_job(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = client.url("emailbison", workspace)
    payload = fixture_bytes(REPLIED)
    answers = await asyncio.gather(*(client.http.post(url, content=payload) for _ in range(100)))
    assert [a.status_code for a in answers] == [200] * 100
    deduped = [a.json()["deduped"] for a in answers]
    assert deduped.count(False) == 1 and deduped.count(True) == 99
    # Every copy names the one stored row (PostgreSQL's sequence may have handed the losing
    # copies of the insert race ids of their own first: the row's id need not be 1).
    [stored] = await rows(settings.database_url, "SELECT id FROM messages")
    assert {a.json()["message_id"] for a in answers} == {stored["id"]}
    assert await count(settings.database_url, "background_jobs") == 1
    assert await count(settings.database_url, "leads") == 1


async def test_a_hundred_distinct_deliveries_at_once_store_a_hundred_messages(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = client.url("emailbison", workspace)
    answers = await asyncio.gather(
        *(client.http.post(url, content=replied(5000 + i)) for i in range(100))
    )
    assert [a.status_code for a in answers] == [200] * 100
    assert not any(a.json()["deduped"] for a in answers)
    assert await count(settings.database_url, "messages") == 100
    assert await count(settings.database_url, "background_jobs") == 100
    assert await count(settings.database_url, "leads") == 1


async def test_dedupe_hit_is_logged_with_its_key(
    client: AppClient, workspace: CreatedWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    url = client.url("emailbison", workspace)
    await client.http.post(url, content=fixture_bytes(REPLIED))
    with caplog.at_level(logging.INFO, logger="hookgate.ingest"):
        await client.http.post(url, content=fixture_bytes(REPLIED))
    [hit] = [r for r in caplog.records if r.getMessage() == "dedupe hit"]
    assert hit.__dict__["event"] == "LEAD_REPLIED"
    assert hit.__dict__["key_name"] == "email_bison_reply_id"
    assert hit.__dict__["key_value"] == "1608263"
    assert hit.__dict__["workspace_id"] == workspace.id
    assert hit.__dict__["lead_id"] == 1
    assert hit.__dict__["deduped"] is True


@pytest.mark.parametrize(
    "order", [["LEAD_REPLIED", "LEAD_INTERESTED"], ["LEAD_INTERESTED", "LEAD_REPLIED"]]
)
async def test_lead_interested_marks_one_message_interested_in_either_order(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, order: list[str]
) -> None:
    url = client.url("emailbison", workspace)
    first = await client.http.post(url, content=replied(event=order[0]))
    second = await client.http.post(url, content=replied(event=order[1]))
    assert first.json()["deduped"] is False
    assert second.json() == {
        "success": True,
        "deduped": True,
        "event": order[1],
        "message_id": first.json()["message_id"],
    }
    [message] = await rows(settings.database_url, "SELECT interested, event FROM messages")
    assert bool(message["interested"]) is True
    assert message["event"] == order[0]
    [lead] = await rows(settings.database_url, "SELECT interested FROM leads")
    assert bool(lead["interested"]) is True
    assert await count(settings.database_url, "background_jobs") == 1


async def test_event_types_are_case_insensitive_and_non_messages_are_ignored(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = client.url("emailbison", workspace)
    lower = await client.http.post(url, content=replied(event="lead_replied"))
    assert lower.json()["event"] == "LEAD_REPLIED"
    opened = await client.http.post(url, content=replied(event="EMAIL_OPENED"))
    assert opened.status_code == 200
    assert opened.json() == {"success": True, "ignored": True, "event": "EMAIL_OPENED"}
    assert await count(settings.database_url, "messages") == 1


@pytest.mark.parametrize(
    "token", [None, "", "wrong-token", "x" * 32], ids=["missing", "empty", "wrong", "random"]
)
async def test_bad_or_missing_token_is_401_and_writes_nothing(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, token: str | None
) -> None:
    url = f"/webhooks/emailbison/{workspace.id}" + ("" if token is None else f"?token={token}")
    answer = await client.http.post(url, content=fixture_bytes(REPLIED))
    assert answer.status_code == 401
    assert answer.json() == {"success": False, "error": "unauthorized"}
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "leads") == 0


async def test_bearer_header_authenticates_like_the_query_token(
    client: AppClient, workspace: CreatedWorkspace
) -> None:
    answer = await client.http.post(
        f"/webhooks/emailbison/{workspace.id}",
        content=fixture_bytes(REPLIED),
        headers={"Authorization": f"Bearer {workspace.tokens['emailbison']}"},
    )
    assert answer.status_code == 200


async def test_another_providers_token_or_workspace_does_not_authenticate(
    client: AppClient, workspace: CreatedWorkspace, db: Database, settings: Settings
) -> None:
    other = await create_workspace(db, "Other", WorkspaceOptions())
    ghl_token = client.url("emailbison", workspace, token=workspace.tokens["ghl"])
    cross_tenant = f"/webhooks/emailbison/{workspace.id}?token={other.tokens['emailbison']}"
    for url in (ghl_token, cross_tenant, "/webhooks/emailbison/ws_0000000000000000?token=x"):
        answer = await client.http.post(url, content=fixture_bytes(REPLIED))
        assert answer.status_code == 401
    assert await count(settings.database_url, "messages") == 0


# A JSON object the parser cannot read is quarantined (202): tests/test_quarantine.py.
@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, got list"),
        (b'"text"', "body must be a JSON object, got str"),
        (b'{"event": "\xff\xfe"}', "body is not valid UTF-8"),
    ],
    ids=[
        "malformed",
        "empty",
        "array",
        "string",
        "utf8",
    ],
)
async def test_bad_bodies_are_400_naming_what_is_wrong(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, content: bytes, error: str
) -> None:
    answer = await client.http.post(client.url("emailbison", workspace), content=content)
    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert error in answer.json()["error"]
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "leads") == 0


async def test_oversized_body_is_413_whether_declared_or_streamed(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    url = client.url("emailbison", workspace)
    limit = settings.webhook_max_body_bytes
    declared = await client.http.post(url, content=b"x" * (limit + 1))
    assert declared.status_code == 413

    async def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await client.http.post(url, content=chunks())
    assert streamed.status_code == 413
    assert "larger than" in streamed.json()["error"]
    assert await count(settings.database_url, "messages") == 0


async def test_a_body_trickled_slowly_to_a_live_server_is_408_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    """Headers at once, then the body a byte at a time (it would take minutes): the request ends
    at WEBHOOK_BODY_TIMEOUT_S with a 408 naming the cause while the body is still coming, the
    connection is closed, nothing is stored, and the next delivery is stored.  (No database
    is involved in the deadline: SQLite only.)"""
    database_url = f"sqlite:///{tmp_path / 'hookgate.db'}"
    db = await connect(database_url)
    await db.apply_migrations(discover(db.dialect))
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    await db.close()
    server = start_server(
        {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "WEBHOOK_BODY_TIMEOUT_S": "1"}
    )
    body = fixture_bytes(REPLIED)
    path = f"/webhooks/emailbison/{workspace.id}?token={workspace.tokens['emailbison']}"
    try:
        host, port = server.base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )

        async def trickle() -> None:
            for byte in body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        sender = asyncio.create_task(trickle())
        try:
            answer = await asyncio.wait_for(reader.read(), 30)  # all of it, until the close
            still_sending = not sender.done()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
            writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
        assert b"connection: close" in head.lower()
        assert json.loads(payload) == {"success": False, "error": "body not received within 1 s"}
        assert still_sending, "the server waited for the whole body"
        assert await count(database_url, "messages") == 0
        async with httpx2.AsyncClient(base_url=server.base_url, timeout=10) as http:
            assert (await http.post(path, content=body)).json()["deduped"] is False
    finally:
        stop_server(server)
    assert await count(database_url, "messages") == 1


async def test_a_body_exactly_at_the_limit_is_accepted(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    payload = fixture_json(REPLIED)
    payload["data"]["reply"]["text_body"] = ""
    raw = encode(payload)
    payload["data"]["reply"]["text_body"] = "y" * (settings.webhook_max_body_bytes - len(raw))
    content = encode(payload)
    assert len(content) == settings.webhook_max_body_bytes
    answer = await client.http.post(client.url("emailbison", workspace), content=content)
    assert answer.status_code == 200


async def test_unknown_provider_is_404(client: AppClient, workspace: CreatedWorkspace) -> None:
    answer = await client.http.post(f"/webhooks/mailchimp/{workspace.id}?token=x", content=b"{}")
    assert answer.status_code == 404


async def test_health_endpoints(client: AppClient) -> None:
    assert (await client.http.get("/healthz")).json() == {"ok": True}
    assert (await client.http.get("/readyz")).json() == {"ok": True}

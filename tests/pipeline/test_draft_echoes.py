"""One row per sent draft, whichever arrives first: the send's answer or the provider's echo
webhook of it.  The fake provider posts the echo to the gateway (through the ASGI app) before it
answers the send, or the echo comes after the send was recorded; on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import AppClient, encode, fixture_json, rows, utc
from tests.crons_support import Clock
from tests.fakes import FakeServer, Reply
from tests.pipeline.conftest import (
    draft_state,
    drafted,
    email_reply,
    jobs_of,
    press_send,
    run_jobs,
)

REPLY_ROUTE = "/api/replies/*/reply"
CHAT_ROUTE = "/api/v1/chats/*/messages"
EMAIL_SENT = {"data": {"success": True, "reply": {"id": 9001}}}
LINKEDIN_SENT = {"object": "MessageSent", "message_id": "msg-fake-1"}
OWN_USER = "ACoAAB1xYzSamCarterExampleId0001"  # the fixture account's own LinkedIn member id
ECHO_SENT_AT = dt.datetime(2026, 3, 4, 15, 30, 7, tzinfo=dt.UTC)
ECHO_COPIES = 8


def email_echo() -> dict[str, Any]:
    """EmailBison's MANUAL_EMAIL_SENT for the reply it sent as 9001."""
    echo = email_reply(id=9001, date_received=ECHO_SENT_AT.isoformat())
    echo["event"]["type"] = "MANUAL_EMAIL_SENT"
    return echo


def linkedin_echo(*, sender_details: bool = True) -> dict[str, Any]:
    """Unipile's message_received for the message the account itself sent as msg-fake-1.  Without
    sender details (a v1 payload with neither ``account_info`` nor ``is_sender``) the gateway
    cannot tell it from an inbound message."""
    echo = fixture_json("unipile/message_received_inbound.json")
    me = {"attendee_id": "own", "attendee_name": "Sam Carter", "attendee_provider_id": OWN_USER}
    echo.update(message_id="msg-fake-1", timestamp=ECHO_SENT_AT.isoformat(), sender=me)
    if sender_details:
        echo["is_sender"] = True
    else:
        del echo["account_info"]
    return echo


async def post_echo(
    client: AppClient, workspace: CreatedWorkspace, provider: str, echo: dict[str, Any]
) -> dict[str, Any]:
    answer = await client.http.post(client.url(provider, workspace), content=encode(echo))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def echo_before_answer(
    client: AppClient, workspace: CreatedWorkspace, provider: str, echo: dict[str, Any]
) -> Callable[[], Awaitable[None]]:
    """What the fake provider does before it answers the send: post the echo, stored at once."""

    async def post() -> None:
        assert (await post_echo(client, workspace, provider, echo))["deduped"] is False

    return post


async def outbound(settings: Settings) -> list[dict[str, Any]]:
    """Every message that is not the lead's inbound one (each of which has a draft)."""
    return await rows(
        settings.database_url,
        "SELECT id, direction, ai_draft_id, email_bison_reply_id, unipile_message_id, sent_at,"
        " provider_thread_id FROM messages WHERE id NOT IN (SELECT message_id FROM ai_drafts)",
    )


@pytest.mark.parametrize("order", ["echo_first", "answer_first"])
async def test_an_email_send_is_one_row_whichever_arrives_first(
    order: str,
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    if order == "echo_first":
        hook = echo_before_answer(client, workspace, "emailbison", email_echo())
        fake_emailbison.script("POST", REPLY_ROUTE, Reply(json=EMAIL_SENT, before=hook))
    message_id = (await press_send(client, draft_id)).json()["message_id"]
    await run_jobs(runtime)
    late = await post_echo(client, workspace, "emailbison", email_echo())
    assert (late["deduped"], late["message_id"]) == (True, message_id)

    [sent] = await outbound(settings)
    assert (sent["id"], sent["ai_draft_id"], sent["email_bison_reply_id"]) == (
        message_id,
        draft_id,
        "9001",
    )
    # The provider's own time of the send when its echo carried one, else the answer's.
    assert utc(sent["sent_at"]) == (ECHO_SENT_AT if order == "echo_first" else clock.now)
    assert (await draft_state(settings))["status"] == "sent"
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 1


@pytest.mark.parametrize("order", ["echo_first", "answer_first"])
async def test_a_linkedin_send_is_one_row_whichever_arrives_first(
    order: str,
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_unipile: FakeServer,
) -> None:
    inbound = fixture_json("unipile/message_received_inbound.json")
    draft_id = await drafted(client, runtime, workspace, fake_openai, "unipile", inbound)
    if order == "echo_first":
        hook = echo_before_answer(client, workspace, "unipile", linkedin_echo())
        fake_unipile.script("POST", CHAT_ROUTE, Reply(201, json=LINKEDIN_SENT, before=hook))
    message_id = (await press_send(client, draft_id)).json()["message_id"]
    await run_jobs(runtime)
    late = await post_echo(client, workspace, "unipile", linkedin_echo())
    assert (late["deduped"], late["message_id"]) == (True, message_id)

    [sent] = await outbound(settings)
    assert (sent["id"], sent["ai_draft_id"], sent["unipile_message_id"]) == (
        message_id,
        draft_id,
        "msg-fake-1",
    )
    assert sent["provider_thread_id"] == inbound["chat_id"]
    assert fake_unipile.count("POST", CHAT_ROUTE) == 1


async def test_an_echo_taken_for_an_inbound_message_still_becomes_the_sends_row(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_unipile: FakeServer,
) -> None:
    """A v1 echo without sender details is stored as an inbound message with a post-process job
    of its own; the send's answer names its id, so it is the send: merged, and never drafted."""
    inbound = fixture_json("unipile/message_received_inbound.json")
    draft_id = await drafted(client, runtime, workspace, fake_openai, "unipile", inbound)
    hook = echo_before_answer(client, workspace, "unipile", linkedin_echo(sender_details=False))
    fake_unipile.script("POST", CHAT_ROUTE, Reply(201, json=LINKEDIN_SENT, before=hook))
    message_id = (await press_send(client, draft_id)).json()["message_id"]
    await run_jobs(runtime)

    [sent] = await outbound(settings)
    assert (sent["id"], sent["direction"], sent["unipile_message_id"]) == (
        message_id,
        "outbound",
        "msg-fake-1",
    )
    [draft] = await rows(settings.database_url, "SELECT message_id FROM ai_drafts")
    [job] = await jobs_of(runtime, "LINKEDIN_INBOUND_POST_PROCESS")  # the echo's went with it
    assert job["message_id"] == draft["message_id"]
    assert fake_openai.count("POST") == 2  # the lead's sentiment and draft; nothing for the echo


async def test_echo_copies_racing_the_send_answer_leave_one_row(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    """The provider answers while copies of its echo are still arriving: the echoes' inserts
    and the send's record run at the same time."""
    copies: list[asyncio.Task[dict[str, Any]]] = []

    async def echoes_in_flight() -> None:
        for _ in range(ECHO_COPIES):
            copies.append(
                asyncio.create_task(post_echo(client, workspace, "emailbison", email_echo()))
            )
        await asyncio.sleep(0)  # let them start; the answer does not wait for them

    fake_emailbison.script("POST", REPLY_ROUTE, Reply(json=EMAIL_SENT, before=echoes_in_flight))
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    message_id = (await press_send(client, draft_id)).json()["message_id"]
    await run_jobs(runtime)
    answers = await asyncio.gather(*copies)

    [sent] = await outbound(settings)
    assert (sent["id"], sent["email_bison_reply_id"]) == (message_id, "9001")
    assert (await draft_state(settings))["status"] == "sent"
    assert sum(not answer["deduped"] for answer in answers) <= 1  # stored once at most
    late = await post_echo(client, workspace, "emailbison", email_echo())
    assert late["message_id"] == message_id

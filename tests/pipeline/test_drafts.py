"""Sending AI drafts on both backends: ``POST /api/drafts/{id}/send`` through the ASGI app, the
DRAFT_SEND job run by hand, the real EmailBison and Unipile clients against fakes on
127.0.0.1.  Drafts come from the post-process job itself: its fixtures (settings, workspace,
runtime, clock) and helpers are in tests/pipeline/conftest.py."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from scheduler.drafts import SendInProgress
from sql import database_now
from tests.conftest import AppClient, count, fixture_json, rows, utc
from tests.crons_support import Clock, eventually
from tests.fakes import FakeServer, Reply
from tests.jobs_support import time_passes
from tests.pipeline.conftest import (
    DRAFT_TEXT,
    deliver,
    draft_state,
    drafted,
    email_reply,
    jobs_of,
    press_send,
    rerun_handler,
    run_jobs,
    script_model,
)

REPLY_PATH = "/api/replies/1608263/reply"
CHAT_PATH = "/api/v1/chats/R8J-xM9WX7eoHLp6gSVtWQ/messages"
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


async def test_send_pressed_twenty_times_at_once_sends_one_message_once(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    answers = await asyncio.gather(*(press_send(client, draft_id) for _ in range(20)))
    assert {a.status_code for a in answers} == {202}
    [message_id] = {a.json()["message_id"] for a in answers}
    outbound = "direction = 'outbound'"
    assert await count(settings.database_url, "messages", outbound) == 1
    assert len(await jobs_of(runtime, "DRAFT_SEND")) == 1

    await run_jobs(runtime)
    again = await press_send(client, draft_id)  # pressed once more after the send
    assert (again.status_code, again.json()["message_id"]) == (202, message_id)
    await run_jobs(runtime)

    [call] = fake_emailbison.requests("POST", "/api/replies/*/reply")
    assert call.path == REPLY_PATH
    assert call.json["message"] == DRAFT_TEXT
    assert call.json["to_emails"] == [
        {"name": None, "email_address": "jordan.lee@northwind.example.com"}
    ]
    [sent] = await rows(
        settings.database_url,
        "SELECT id, ai_draft_id, email_bison_reply_id, sent_at, body FROM messages"
        f" WHERE {outbound}",
    )
    assert (sent["id"], sent["ai_draft_id"], sent["email_bison_reply_id"]) == (
        message_id,
        draft_id,
        "9001",
    )
    assert sent["sent_at"] is not None and sent["body"] == DRAFT_TEXT
    assert (await draft_state(settings))["status"] == "sent"
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert (job["status"], job["attempts"]) == ("succeeded", 1)

    # EmailBison's webhook for the reply it just sent is a dedupe hit on that row.
    echo = email_reply(id=9001)
    echo["event"]["type"] = "MANUAL_EMAIL_SENT"
    answer = await client.http.post(client.url("emailbison", workspace), json=echo)
    assert answer.json()["deduped"] is True and answer.json()["message_id"] == message_id


async def test_linkedin_draft_goes_to_the_inbound_chat(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_unipile: FakeServer,
) -> None:
    inbound = fixture_json("unipile/message_received_inbound.json")
    draft_id = await drafted(client, runtime, workspace, fake_openai, "unipile", inbound)
    answer = await press_send(client, draft_id)
    assert answer.status_code == 202
    await run_jobs(runtime)
    [call] = fake_unipile.requests("POST", "/api/v1/chats/*/messages")
    assert (call.path, call.form) == (CHAT_PATH, {"text": DRAFT_TEXT})
    [sent] = await rows(
        settings.database_url,
        "SELECT unipile_message_id FROM messages WHERE direction = 'outbound'",
    )
    assert sent["unipile_message_id"] == "msg-fake-1"
    assert (await draft_state(settings))["status"] == "sent"


async def test_unknown_send_outcome_is_left_for_a_human_never_resent(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    fake_emailbison.script("POST", "/api/replies/*/reply", Reply(json={}, delay_s=3))
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    await press_send(client, draft_id)
    await run_jobs(runtime)  # EMAILBISON_TIMEOUT_MS is 1 s: the POST times out
    state = await draft_state(settings)
    assert state["status"] == "send_unknown" and state["last_error"].startswith("timeout")
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "succeeded"  # ended, not retried
    await press_send(client, draft_id)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", "/api/replies/*/reply") == 1
    assert await count(settings.database_url, "messages", "sent_at IS NULL") == 1


async def test_a_claim_still_holding_is_retried_later_and_one_past_its_hold_is_unknown(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    await press_send(client, draft_id)
    # As an earlier run leaves it while it is inside the provider call, or killed there.
    await runtime.db.execute("claim_draft_send", id=draft_id, hold_s=600, auto=False)
    [held_until] = await rows(settings.database_url, "SELECT sending_until FROM ai_drafts")
    assert utc(held_until["sending_until"]) > await database_now(runtime.db)
    await run_jobs(runtime)
    assert (await draft_state(settings))["status"] == "sending"
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert job["last_error"].startswith("SendInProgress: draft")

    # The claiming run never came back: its hold passes.
    await rows(settings.database_url, "UPDATE ai_drafts SET sending_until = $1", LONG_AGO)
    await time_passes(settings.database_url, 60)  # past the backoff
    await run_jobs(runtime)
    state = await draft_state(settings)
    assert state["status"] == "send_unknown" and "may have been sent" in state["last_error"]
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "succeeded"
    assert fake_emailbison.count("POST") == 0


async def test_a_second_run_while_the_first_is_inside_the_call_sends_nothing(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    answer = asyncio.Event()
    sent = Reply(json={"data": {"success": True, "reply": {"id": 9001}}}, before=answer.wait)
    fake_emailbison.script("POST", "/api/replies/*/reply", sent)
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    message_id = (await press_send(client, draft_id)).json()["message_id"]
    first = asyncio.create_task(
        rerun_handler(runtime, "DRAFT_SEND", message_id, workspace.id), name="first run"
    )
    await fake_emailbison.wait_for_requests(len(fake_emailbison.seen) + 1)
    assert fake_emailbison.count("POST", "/api/replies/*/reply") == 1  # the first is inside it

    with pytest.raises(SendInProgress, match=f"draft {draft_id} is being sent by another run"):
        await rerun_handler(runtime, "DRAFT_SEND", message_id, workspace.id)
    await run_jobs(runtime)  # the queued job, run by the runner meanwhile: it backs off
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert (await draft_state(settings))["status"] == "sending"

    answer.set()
    await asyncio.wait_for(first, 10)
    assert (await draft_state(settings))["status"] == "sent"
    await time_passes(settings.database_url, 60)  # past the backoff
    await run_jobs(runtime)  # the retry finds it sent
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "succeeded"
    assert fake_emailbison.count("POST", "/api/replies/*/reply") == 1


@pytest.mark.parametrize(
    "extra_env", [{"HOOKGATE_SCHEDULER": "1", "JOB_POLL_INTERVAL_MS": "600000"}]
)
async def test_pressing_send_wakes_the_runner_instead_of_waiting_for_its_poll(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    # The scheduler polls at its start and then every ten minutes; the webhook wakes it for the
    # post-process job, and the press must wake it for the send.
    script_model(fake_openai, "interested", DRAFT_TEXT)
    await deliver(client, workspace, "emailbison", email_reply())

    async def drafted_by_scheduler() -> bool:
        return await count(settings.database_url, "ai_drafts") == 1

    await eventually(drafted_by_scheduler, timeout_s=20)
    [draft] = await rows(settings.database_url, "SELECT id FROM ai_drafts")
    assert (await press_send(client, draft["id"])).status_code == 202

    async def sent() -> bool:
        return (await draft_state(settings))["status"] == "sent"

    await eventually(sent, timeout_s=20)
    assert fake_emailbison.count("POST", "/api/replies/*/reply") == 1


async def test_a_refused_send_gives_the_claim_back_and_is_retried(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    refused = Reply(422, json={"data": {"success": False, "error": "sender mailbox paused"}})
    ok = Reply(json={"data": {"success": True, "reply": {"id": 9002}}})
    fake_emailbison.script("POST", "/api/replies/*/reply", refused, ok)
    draft_id = await drafted(client, runtime, workspace, fake_openai)
    await press_send(client, draft_id)
    await run_jobs(runtime)
    assert await draft_state(settings) == {
        "status": "draft",
        "last_error": "http_status: status 422",
    }
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert (job["status"], job["attempts"]) == ("pending", 1)
    await time_passes(settings.database_url, 60)  # past the backoff
    await run_jobs(runtime)
    assert (await draft_state(settings))["status"] == "sent"
    assert fake_emailbison.count("POST", "/api/replies/*/reply") == 2
    assert await count(settings.database_url, "messages", "email_bison_reply_id = '9002'") == 1


async def test_send_route_refuses_sms_unknown_drafts_and_strangers(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    sms = fixture_json("gohighlevel/inbound_message_sms.json")
    draft_id = await drafted(client, runtime, workspace, fake_openai, "ghl", sms)
    answer = await press_send(client, draft_id)
    assert (answer.status_code, answer.json()["error"]) == (422, "no SMS sender configured")
    assert (await press_send(client, draft_id + 1)).status_code == 404
    stranger = await client.http.post(
        f"/api/drafts/{draft_id}/send", headers={"Authorization": "Bearer wrong"}
    )
    assert stranger.status_code == 401
    assert await count(settings.database_url, "messages", "direction = 'outbound'") == 0
    assert len(await jobs_of(runtime, "DRAFT_SEND")) == 0


@pytest.mark.parametrize("extra_env", [{"UNIPILE_API_KEY": ""}])
async def test_linkedin_send_with_unipile_off_keeps_the_draft(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    inbound = fixture_json("unipile/message_received_inbound.json")
    draft_id = await drafted(client, runtime, workspace, fake_openai, "unipile", inbound)
    await press_send(client, draft_id)
    await run_jobs(runtime)
    state = await draft_state(settings)
    assert state["status"] == "draft" and state["last_error"].startswith("disabled")
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "pending" and "not sent" in job["last_error"]

"""Auto-send on both backends: the post-process job decides once whether a draft sends itself,
the DRAFT_SEND job waits out the window (its run_at, by the database's clock), and an operator
can stop it in between from the CLI, the admin API, by pressing send, or by turning auto-send
off; a reply in the thread stops it too.  "The window ends" is the test moving the job's run_at
into the past, whichever clock the runner compares it with."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from gateway.cli import main
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceCache
from scheduler.auto_send import set_workspace_auto_send
from sql import Database, database_now
from tests.conftest import AppClient, count, encode, fixture_json, rows, utc
from tests.fakes import FakeServer
from tests.pipeline.conftest import (
    ADMIN,
    DRAFT_TEXT,
    EMAIL_JOB,
    deliver,
    drafted,
    email_reply,
    jobs_of,
    press_send,
    rerun_handler,
    run_jobs,
    script_model,
)

REPLY_ROUTE = "/api/replies/*/reply"
LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
AFTER_THE_LEAD = "2026-03-04T16:05:00.000000Z"  # the lead wrote at 15:22


def confident(confidence: Any = 0.95) -> str:
    """The model's draft in JSON mode."""
    return json.dumps({"reply": DRAFT_TEXT, "confidence": confidence})


@pytest.fixture
async def auto_workspace(db: Database, workspace: CreatedWorkspace) -> CreatedWorkspace:
    assert await set_workspace_auto_send(db, workspace.id, True)
    return workspace


async def auto_state(settings: Settings) -> dict[str, Any]:
    [draft] = await rows(
        settings.database_url,
        "SELECT status, confidence, auto_send, auto_send_reason, auto_send_at,"
        " auto_send_decided_at FROM ai_drafts",
    )
    return draft


async def window_ends(settings: Settings) -> None:
    await rows(
        settings.database_url,
        "UPDATE background_jobs SET run_at = $1 WHERE type = 'DRAFT_SEND' AND status = 'pending'",
        LONG_AGO,
    )


async def human_answers(client: AppClient, workspace: CreatedWorkspace) -> None:
    """Someone answers the lead from the EmailBison inbox (its MANUAL_EMAIL_SENT)."""
    sent = email_reply(id=777001, date_received=AFTER_THE_LEAD, text_body="Sam here: call me")
    sent["event"]["type"] = "MANUAL_EMAIL_SENT"
    answer = await client.http.post(client.url("emailbison", workspace), content=encode(sent))
    assert answer.status_code == 200 and answer.json()["deduped"] is False


async def hookgate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["drafts", *args])  # the command runs its own loop
    return code, capsys.readouterr().out


async def test_a_confident_draft_sends_itself_when_its_window_ends(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    state = await auto_state(settings)
    assert (state["status"], state["confidence"], state["auto_send"]) == (
        "draft",
        0.95,
        "scheduled",
    )
    db_now = await database_now(runtime.db)
    send_at = utc(state["auto_send_at"])
    assert db_now < send_at <= db_now + dt.timedelta(seconds=settings.auto_send_delay_s)
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert (job["status"], utc(job["run_at"])) == ("pending", send_at)
    draft_call = fake_openai.seen[1].json
    assert draft_call["response_format"] == {"type": "json_object"}

    await run_jobs(runtime)  # inside the window: nothing is due
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 0
    await window_ends(settings)
    await run_jobs(runtime)
    [call] = fake_emailbison.requests("POST", REPLY_ROUTE)
    assert call.json["message"] == DRAFT_TEXT
    state = await auto_state(settings)
    assert (state["status"], state["auto_send"]) == ("sent", "sent")
    [sent] = await rows(
        settings.database_url,
        "SELECT ai_draft_id, email_bison_reply_id FROM messages WHERE direction = 'outbound'",
    )
    assert (sent["ai_draft_id"], sent["email_bison_reply_id"]) == (draft_id, "9001")
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "succeeded"


async def test_auto_send_is_off_unless_the_workspace_turns_it_on(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    await drafted(client, runtime, workspace, fake_openai, draft_answer=confident(1.0))
    state = await auto_state(settings)
    assert (state["confidence"], state["auto_send"], state["auto_send_at"]) == (1.0, None, None)
    assert await jobs_of(runtime, "DRAFT_SEND") == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (confident(0.5), "confidence 0.50 is below AUTO_SEND_MIN_CONFIDENCE 0.90"),
        (DRAFT_TEXT, "the model gave no confidence for the draft"),  # not JSON: no confidence
        (confident("very"), "the model gave no confidence for the draft"),
        (confident(7), "the model gave no confidence for the draft"),  # outside 0..1
    ],
)
async def test_a_draft_without_enough_confidence_is_skipped(
    answer: str,
    reason: str,
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=answer)
    state = await auto_state(settings)
    assert (state["auto_send"], state["auto_send_reason"]) == ("skipped", reason)
    assert state["auto_send_decided_at"] is not None
    assert await jobs_of(runtime, "DRAFT_SEND") == []
    assert await count(settings.database_url, "messages", "direction = 'outbound'") == 0


async def test_an_sms_draft_is_skipped(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    sms = fixture_json("gohighlevel/inbound_message_sms.json")
    await drafted(
        client, runtime, auto_workspace, fake_openai, "ghl", sms, draft_answer=confident()
    )
    state = await auto_state(settings)
    assert (state["auto_send"], state["auto_send_reason"]) == (
        "skipped",
        "no SMS sender configured",
    )
    assert await jobs_of(runtime, "DRAFT_SEND") == []


async def test_a_lead_someone_answered_already_is_skipped(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    script_model(fake_openai, "interested", confident())
    await deliver(client, auto_workspace, "emailbison", email_reply())
    await human_answers(client, auto_workspace)  # before the post-process job ran
    [human] = await rows(
        settings.database_url, "SELECT id FROM messages WHERE direction = 'outbound'"
    )
    await run_jobs(runtime)
    state = await auto_state(settings)
    assert state["auto_send"] == "skipped"
    assert state["auto_send_reason"] == (
        f"message {human['id']} (MANUAL_EMAIL_SENT) answered the lead in the thread already"
    )
    assert await jobs_of(runtime, "DRAFT_SEND") == []


async def test_the_decision_is_taken_once_however_often_the_job_runs(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    # Drafted while auto-send was off; then on, and the job runs again, six runs at once
    # (a retry racing a run whose claim was superseded), then three more one after the other.
    draft_id = await drafted(client, runtime, workspace, fake_openai, draft_answer=confident())
    [draft] = await rows(settings.database_url, "SELECT message_id FROM ai_drafts")
    assert await set_workspace_auto_send(runtime.db, workspace.id, True)
    runtime.workspaces = WorkspaceCache(runtime.db, 0.0)  # no cached row with auto-send off
    rerun = (EMAIL_JOB, draft["message_id"], workspace.id)
    await asyncio.gather(*(rerun_handler(runtime, *rerun) for _ in range(6)))
    decided = await auto_state(settings)
    assert decided["auto_send"] == "scheduled"
    for _ in range(3):
        await rerun_handler(runtime, *rerun)
    assert await auto_state(settings) == decided
    assert len(await jobs_of(runtime, "DRAFT_SEND")) == 1
    outbound = "direction = 'outbound' AND ai_draft_id = $1"
    assert await count(settings.database_url, "messages", outbound, draft_id) == 1

    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 1


async def test_cancelled_from_the_cli_in_the_window_nothing_is_sent(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    url = settings.database_url
    draft_id = await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    code, out = await hookgate(capsys, monkeypatch, url, "list", "--auto-send", "scheduled")
    assert code == 0 and f"{draft_id:>8}  {auto_workspace.id}  draft" in out
    code, out = await hookgate(capsys, monkeypatch, url, "cancel", str(draft_id))
    assert (code, out.strip()) == (
        0,
        f"auto-send of draft {draft_id} cancelled; it stays a draft "
        f"(POST /api/drafts/{draft_id}/send sends it)",
    )
    state = await auto_state(settings)
    assert (state["status"], state["auto_send"], state["auto_send_reason"]) == (
        "draft",
        "cancelled",
        "cancelled from the command line",
    )
    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 0
    [job] = await jobs_of(runtime, "DRAFT_SEND")
    assert job["status"] == "succeeded"  # it ran, found the auto-send cancelled, sent nothing

    assert (await hookgate(capsys, monkeypatch, url, "cancel", str(draft_id)))[0] == 0  # again
    assert await hookgate(capsys, monkeypatch, url, "cancel", "999") == (1, "no draft 999\n")
    # Still a draft: pressing send sends it, at once.
    assert (await press_send(client, draft_id)).status_code == 202
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 1
    assert (await auto_state(settings))["status"] == "sent"


async def test_cancel_through_the_admin_api(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    path = f"/api/drafts/{draft_id}/auto-send/cancel"
    stranger = await client.http.post(path, headers={"Authorization": "Bearer wrong"})
    assert stranger.status_code == 401
    assert (await auto_state(settings))["auto_send"] == "scheduled"
    for _ in range(2):  # cancelling twice is still cancelled
        answer = await client.http.post(path, headers=ADMIN)
        assert (answer.status_code, answer.json()) == (
            200,
            {
                "success": True,
                "draft_id": draft_id,
                "status": "draft",
                "auto_send": "cancelled",
                "auto_send_reason": "cancelled through the admin API",
            },
        )
    unknown = await client.http.post(f"/api/drafts/{draft_id + 1}/auto-send/cancel", headers=ADMIN)
    assert unknown.status_code == 404
    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 0


async def test_too_late_or_nothing_to_cancel_is_a_conflict(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    path = f"/api/drafts/{draft_id}/auto-send/cancel"
    # The auto-send's run has claimed the send: it may be inside the provider call.
    assert await runtime.db.fetch_one("claim_draft_send", id=draft_id, hold_s=60, auto=True)
    late = await client.http.post(path, headers=ADMIN)
    assert (late.status_code, late.json()["error"]) == (
        409,
        f"draft {draft_id} is sending already: too late to cancel",
    )
    await rows(settings.database_url, "UPDATE ai_drafts SET auto_send = 'skipped'")
    skipped = await client.http.post(path, headers=ADMIN)
    assert skipped.status_code == 409 and "auto-send is skipped already" in skipped.json()["error"]


async def test_a_reply_in_the_window_stops_the_send(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    assert (await auto_state(settings))["auto_send"] == "scheduled"
    await human_answers(client, auto_workspace)
    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 0
    state = await auto_state(settings)
    assert (state["status"], state["auto_send"]) == ("draft", "skipped")
    assert "answered the lead in the thread already" in state["auto_send_reason"]


async def test_turning_auto_send_off_stops_the_scheduled_sends(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    url = settings.database_url
    await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    code, _ = await hookgate(capsys, monkeypatch, url, "auto-send", auto_workspace.id, "off")
    assert code == 0
    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 0
    state = await auto_state(settings)
    assert (state["auto_send"], state["auto_send_reason"]) == (
        "skipped",
        "auto-send was turned off for the workspace",
    )
    assert (await hookgate(capsys, monkeypatch, url, "auto-send", "ws_nope", "on"))[0] == 1


async def test_pressing_send_in_the_window_sends_now_and_once(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    draft_id = await drafted(client, runtime, auto_workspace, fake_openai, draft_answer=confident())
    assert (await press_send(client, draft_id)).status_code == 202
    await run_jobs(runtime)  # the pressed send is due now; the auto-send's job is not
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 1
    state = await auto_state(settings)
    assert (state["status"], state["auto_send"], state["auto_send_reason"]) == (
        "sent",
        "cancelled",
        "an operator pressed send",
    )
    await window_ends(settings)
    await run_jobs(runtime)
    assert fake_emailbison.count("POST", REPLY_ROUTE) == 1
    assert {job["status"] for job in await jobs_of(runtime, "DRAFT_SEND")} == {"succeeded"}


async def test_never_for_outbound_messages_or_echoes(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    script_model(fake_openai, "interested", confident(1.0))
    manual = email_reply(id=555001)
    manual["event"]["type"] = "MANUAL_EMAIL_SENT"
    await deliver(client, auto_workspace, "emailbison", manual)
    await deliver(client, auto_workspace, "emailbison", fixture_json("emailbison/email_sent.json"))
    own = fixture_json("unipile/message_received_inbound.json")
    own["is_sender"] = True  # the account's own message, echoed
    await deliver(client, auto_workspace, "unipile", own)
    await run_jobs(runtime)
    assert await count(settings.database_url, "messages", "direction = 'outbound'") == 3
    assert await count(settings.database_url, "ai_drafts") == 0
    assert await count(settings.database_url, "background_jobs") == 0
    assert fake_openai.count("POST") == 0


async def test_a_json_answer_without_a_reply_is_a_failed_model_call(
    client: AppClient,
    runtime: Runtime,
    auto_workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    script_model(fake_openai, "interested", json.dumps({"confidence": 0.99}))
    await deliver(client, auto_workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "pending"  # retried with backoff, like a model that timed out
    assert job["last_error"] == (
        "ModelUnavailable: draft model call: the answer is JSON without a reply"
    )
    assert await count(settings.database_url, "ai_drafts") == 0

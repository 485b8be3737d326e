"""The inbound post-process job on both backends: webhooks stored through the ASGI app (its
scheduler off), then the job runner run by hand with a clock the test moves.  The real clients
talk to fake OpenAI, Slack, EmailBison and Unipile servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler.post_process import parse_sentiment
from sql import Database
from tests.conftest import AppClient, count, fixture_json, rows
from tests.crons_support import Clock, slack_texts
from tests.fakes import FakeServer, Reply, closed_port_url
from tests.jobs_support import time_passes
from tests.pipeline.conftest import (
    DRAFT_TEXT,
    EMAIL_JOB,
    deliver,
    email_reply,
    jobs_of,
    rerun_handler,
    run_jobs,
    script_model,
)


async def test_interested_reply_is_enriched_classified_drafted_and_notified(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    fake_emailbison: FakeServer,
) -> None:
    url = settings.database_url
    fake_emailbison.script(
        "GET",
        "/api/leads/*",
        Reply(json={"data": {"first_name": "Jordan", "company": "Northwind", "title": "CTO"}}),
    )
    script_model(fake_openai, "Interested.", DRAFT_TEXT)
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)

    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    [lookup] = fake_emailbison.requests("GET", "/api/leads/*")
    assert lookup.path == "/api/leads/jordan.lee@northwind.example.com"
    assert lookup.headers["Authorization"] == "Bearer eb-test-key"
    [lead] = await rows(url, "SELECT company, title, sentiment, enriched_at FROM leads")
    assert (lead["company"], lead["title"], lead["sentiment"]) == ("Northwind", "CTO", "interested")
    assert lead["enriched_at"] is not None
    [message] = await rows(url, "SELECT sentiment, notified_at FROM messages")
    assert message["sentiment"] == "interested" and message["notified_at"] is not None

    calls = await rows(url, "SELECT source, purpose, status FROM ai_interactions ORDER BY id")
    assert calls == [
        {"source": f"background_job:{EMAIL_JOB}", "purpose": purpose, "status": "ok"}
        for purpose in ("sentiment", "draft")
    ]
    classify_prompt = fake_openai.seen[0].json["messages"][1]["content"]
    assert "Can you send over pricing?" in classify_prompt
    [draft] = await rows(url, "SELECT id, message_id, body, status FROM ai_drafts")
    assert (draft["message_id"], draft["body"], draft["status"]) == (
        message_id,
        DRAFT_TEXT,
        "draft",
    )
    [(channel, text)] = slack_texts(fake_slack)
    assert channel == "#replies"
    assert "jordan.lee@northwind.example.com" in text and f"draft {draft['id']}" in text


async def test_retried_job_neither_drafts_nor_notifies_twice(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    url = settings.database_url
    script_model(fake_openai, "interested", DRAFT_TEXT)
    refused = Reply(json={"ok": False, "error": "invalid_auth"})
    ok = Reply(json={"ok": True, "channel": "C0REPLIES", "ts": "1767225600.000200"})
    fake_slack.script("POST", "/api/chat.postMessage", refused, ok)
    message_id = await deliver(client, workspace, "emailbison", email_reply())

    await run_jobs(runtime)  # drafts, then Slack refuses: the job fails after drafting
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert "Slack notification not sent" in job["last_error"]
    assert await count(url, "ai_drafts") == 1
    assert await count(url, "messages", "notified_at IS NULL") == 1  # the claim was given back

    await time_passes(settings.database_url, 60)  # past the backoff
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("succeeded", 2)

    await rerun_handler(runtime, EMAIL_JOB, message_id, workspace.id)  # and once more
    assert await count(url, "ai_drafts") == 1
    assert fake_openai.count("POST", "/v1/chat/completions") == 2  # the retries reused both
    assert await count(url, "ai_interactions") == 2
    assert fake_slack.count("POST", "/api/chat.postMessage") == 2  # one refused, one posted


@pytest.mark.parametrize("extra_env", [{"OPENAI_API_KEY": ""}])
async def test_ai_off_the_job_succeeds_without_draft_and_still_notifies(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    payload = email_reply()
    payload["event"]["type"] = "LEAD_INTERESTED"  # the provider says so: no model needed
    await deliver(client, workspace, "emailbison", payload)
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"
    assert await count(settings.database_url, "ai_drafts") == 0
    assert await count(settings.database_url, "ai_interactions") == 0
    assert await count(settings.database_url, "messages", "sentiment IS NULL") == 1
    assert fake_openai.count() == 0
    assert len(slack_texts(fake_slack)) == 1


@pytest.mark.parametrize("failure", ["status_500", "closed_port"])
async def test_enrichment_failure_does_not_fail_the_job(
    client: AppClient,
    runtime: Runtime,
    db: Database,
    settings: Settings,
    fake_emailbison: FakeServer,
    fake_openai: FakeServer,
    failure: str,
) -> None:
    base_url = fake_emailbison.url if failure == "status_500" else closed_port_url()
    fake_emailbison.script("GET", "/api/leads/*", Reply(500, json={"error": "boom"}))
    options = WorkspaceOptions(emailbison_api_key="eb-key", emailbison_base_url=base_url)
    workspace = await create_workspace(db, "Flaky EmailBison", options)
    script_model(fake_openai, "not_interested")
    await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("succeeded", 1)
    [lead] = await rows(settings.database_url, "SELECT enriched_at, sentiment FROM leads")
    assert lead == {"enriched_at": None, "sentiment": "not_interested"}
    assert await count(settings.database_url, "ai_drafts") == 0


@pytest.mark.parametrize("extra_env", [{"JOB_MAX_ATTEMPTS": "2"}])
async def test_failing_model_retries_then_carries_on_without_it(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    clock: Clock,
    fake_openai: FakeServer,
) -> None:
    fake_openai.script("POST", "/v1/chat/completions", Reply(500, json={"error": {"type": "x"}}))
    await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "pending"
    assert job["last_error"].startswith("ModelUnavailable: sentiment model call: error")
    await time_passes(settings.database_url, 60)  # past the backoff
    await run_jobs(runtime)  # the last attempt: no sentiment, but the job succeeds
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    calls = await rows(settings.database_url, "SELECT purpose, status FROM ai_interactions")
    assert calls == [{"purpose": "sentiment", "status": "error"}] * 2
    assert await count(settings.database_url, "messages", "sentiment IS NULL") == 1
    assert await count(settings.database_url, "ai_drafts") == 0


async def test_slack_timeout_keeps_the_claim_and_is_never_resent(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "interested", DRAFT_TEXT)
    fake_slack.script("POST", "/api/chat.postMessage", Reply(json={"ok": True}, delay_s=3))
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"  # the outcome is unknown: logged, not retried
    await rerun_handler(runtime, EMAIL_JOB, message_id, workspace.id)
    assert fake_slack.count("POST", "/api/chat.postMessage") == 1
    assert await count(settings.database_url, "messages", "notified_at IS NOT NULL") == 1


@pytest.mark.parametrize("extra_env", [{"SLACK_API_URL": closed_port_url() + "/api/"}])
async def test_slack_never_reached_gives_the_claim_back_for_a_retry(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
) -> None:
    """A refused connection is not an unknown outcome: Slack certainly posted nothing, so the
    notification must be retried rather than lost."""
    script_model(fake_openai, "interested", DRAFT_TEXT)
    await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)  # idle once the failed job waits out its backoff
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"]) == ("pending", 1)
    assert "Slack notification not sent" in job["last_error"]
    assert await count(settings.database_url, "messages", "notified_at IS NULL") == 1


async def test_linkedin_question_keeps_its_chat_and_is_drafted_not_notified(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "question", DRAFT_TEXT)
    await deliver(
        client, workspace, "unipile", fixture_json("unipile/message_received_inbound.json")
    )
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, "LINKEDIN_INBOUND_POST_PROCESS")
    assert job["status"] == "succeeded"
    [message] = await rows(
        settings.database_url, "SELECT provider_thread_id, sentiment FROM messages"
    )
    assert message == {"provider_thread_id": "R8J-xM9WX7eoHLp6gSVtWQ", "sentiment": "question"}
    sources = await rows(settings.database_url, "SELECT DISTINCT source FROM ai_interactions")
    assert sources == [{"source": "background_job:LINKEDIN_INBOUND_POST_PROCESS"}]
    assert await count(settings.database_url, "ai_drafts") == 1
    assert fake_slack.count() == 0  # a question is not an interested lead


@pytest.mark.parametrize(
    ("answer", "sentiment"),
    [
        ("interested", "interested"),
        ("  Question.\n", "question"),
        ("Not interested", "not_interested"),
        ("out-of-office", "out_of_office"),
        ("NEUTRAL", "neutral"),
        ("The lead is interested", "neutral"),
        ("positive", "neutral"),
        ("", "neutral"),
        (None, "neutral"),
    ],
)
def test_sentiment_answers_are_read_strictly(answer: str | None, sentiment: str) -> None:
    assert parse_sentiment(answer) == sentiment

"""A ``LEAD_INTERESTED`` that arrives as a copy of a reply already stored (issue 14 item 11)
reaches Slack exactly once, on both backends, whenever it lands: after the reply's post-process
job succeeded, before the job ran, while the job is inside its slow model call, and as many
copies at once.  The model classifies the reply ``question`` (a draft, no notification of its
own), so the only reason to notify is the provider's word; the re-run drafts nothing again and
asks the model nothing again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import AppClient, count, rows
from tests.fakes import FakeServer, Reply, chat_completion
from tests.pipeline.conftest import (
    DRAFT_TEXT,
    EMAIL_JOB,
    deliver,
    email_reply,
    jobs_of,
    run_jobs,
    script_model,
)

POST_MESSAGE = "/api/chat.postMessage"
COMPLETIONS = "/v1/chat/completions"


def interested() -> dict[str, Any]:
    payload = email_reply()
    payload["event"]["type"] = "LEAD_INTERESTED"
    return payload


async def assert_notified_once(
    runtime: Runtime, settings: Settings, fake_openai: FakeServer, fake_slack: FakeServer
) -> None:
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [message] = await rows(settings.database_url, "SELECT interested, notify_outcome FROM messages")
    assert bool(message["interested"]) and message["notify_outcome"] == "sent"
    assert await count(settings.database_url, "ai_drafts") == 1
    assert fake_openai.count("POST", COMPLETIONS) == 2  # one sentiment, one draft: never again


async def test_after_the_job_succeeded(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "question", DRAFT_TEXT)
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    assert fake_slack.count("POST", POST_MESSAGE) == 0

    assert await deliver(client, workspace, "emailbison", interested()) == message_id
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert (job["status"], job["attempts"], job["last_error"]) == ("pending", 0, None)
    await run_jobs(runtime)
    await assert_notified_once(runtime, settings, fake_openai, fake_slack)

    await deliver(client, workspace, "emailbison", interested())  # no news now: no re-run
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"
    await run_jobs(runtime)
    await assert_notified_once(runtime, settings, fake_openai, fake_slack)


async def test_before_the_job_ran(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "question", DRAFT_TEXT)
    await deliver(client, workspace, "emailbison", email_reply())
    await deliver(client, workspace, "emailbison", interested())
    await run_jobs(runtime)
    await assert_notified_once(runtime, settings, fake_openai, fake_slack)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["attempts"] == 1  # the interest came before the run: one run was enough


@pytest.mark.parametrize("copies", [1, 12])
async def test_while_the_job_is_in_its_slow_model_call(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    copies: int,
) -> None:
    """The run has read the message (not interested yet) and waits for the model when the
    interest is stored (the fake model stores it before it answers): the run's success puts
    the job back to pending, and the second run notifies."""
    states: list[str] = []

    async def interest_arrives() -> None:
        [job] = await jobs_of(runtime, EMAIL_JOB)
        states.append(job["status"])
        await asyncio.gather(
            *(deliver(client, workspace, "emailbison", interested()) for _ in range(copies))
        )

    fake_openai.script(
        "POST",
        COMPLETIONS,
        Reply(json=chat_completion("question"), before=interest_arrives),
        Reply(json=chat_completion(DRAFT_TEXT)),
    )
    await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    assert states == ["running"]
    await assert_notified_once(runtime, settings, fake_openai, fake_slack)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["attempts"] == 1  # the re-run starts afresh


async def test_many_copies_at_once_after_the_job_succeeded(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "question", DRAFT_TEXT)
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    ids = await asyncio.gather(
        *(deliver(client, workspace, "emailbison", interested()) for _ in range(20))
    )
    assert set(ids) == {message_id}
    await run_jobs(runtime)
    await assert_notified_once(runtime, settings, fake_openai, fake_slack)

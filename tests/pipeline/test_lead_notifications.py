"""The interested-lead notification (scheduler/lead_notifications.py) under Slack's three verdicts,
on both backends: an unknown outcome is posted once however often the job runs, recorded on the
message, shown by ``hookgate alerts list`` and re-sent only by ``hookgate alerts resend
--message``; a run that stopped mid-post leaves an unknown outcome, never a second post."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import AppClient, rows
from tests.fakes import FakeServer, Reply
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
from tests.test_alerts import UNKNOWN_SLACKS, cli

POST_MESSAGE = "/api/chat.postMessage"
NOTIFICATION = "SELECT notified_at, notify_outcome, notify_error FROM messages"


@pytest.mark.parametrize("reply", UNKNOWN_SLACKS)
async def test_an_unknown_notification_is_posted_once_and_resent_on_purpose(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reply: Reply,
) -> None:
    url = settings.database_url
    script_model(fake_openai, "interested", DRAFT_TEXT)
    fake_slack.script("POST", POST_MESSAGE, reply)
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"  # unknown: recorded, and the job is not retried for it
    for _ in range(2):
        await rerun_handler(runtime, EMAIL_JOB, message_id, workspace.id)
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [note] = await rows(url, NOTIFICATION)
    assert note["notify_outcome"] == "unknown" and note["notify_error"]

    code, out = await cli(monkeypatch, capsys, settings, "list", "--unknown", "--json")
    assert code == 0
    [listed] = json.loads(out)["notifications"]
    assert (listed["message_id"], listed["workspace_id"]) == (message_id, workspace.id)

    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True, "ts": "1.2"}))
    code, out = await cli(monkeypatch, capsys, settings, "resend", "--message", str(message_id))
    assert code == 0 and "Slack posted it" in out, out
    code, out = await cli(monkeypatch, capsys, settings, "resend", "--message", str(message_id))
    assert code == 1 and "was sent; not re-sent" in out
    await rerun_handler(runtime, EMAIL_JOB, message_id, workspace.id)
    texts = [r.json["text"] for r in fake_slack.requests("POST", POST_MESSAGE)]
    assert len(texts) == 2 and texts[0] == texts[1]  # the first post and the one resend
    [note] = await rows(url, NOTIFICATION)
    assert (note["notify_outcome"], note["notify_error"]) == ("sent", None)


async def test_a_run_that_stopped_mid_post_leaves_an_unknown_outcome_not_a_second_post(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
) -> None:
    script_model(fake_openai, "interested", DRAFT_TEXT)
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=0.8))
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    stopping = asyncio.create_task(rerun_handler(runtime, EMAIL_JOB, message_id, workspace.id))
    await fake_slack.wait_for_requests(1)
    stopping.cancel()  # e.g. its claim was superseded, or the process is going away
    with pytest.raises(asyncio.CancelledError):
        await stopping
    [note] = await rows(settings.database_url, NOTIFICATION)
    assert note["notified_at"] is not None and note["notify_outcome"] is None

    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}))
    await run_jobs(runtime)  # the job's own run finds the abandoned claim
    [job] = await jobs_of(runtime, EMAIL_JOB)
    assert job["status"] == "succeeded"
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [note] = await rows(settings.database_url, NOTIFICATION)
    assert note["notify_outcome"] == "unknown" and "stopped" in note["notify_error"]


async def test_a_refused_notification_resend_keeps_it_unknown(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    settings: Settings,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script_model(fake_openai, "interested", DRAFT_TEXT)
    fake_slack.script("POST", POST_MESSAGE, Reply(502, body=b"bad gateway"))
    message_id = await deliver(client, workspace, "emailbison", email_reply())
    await run_jobs(runtime)
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": False, "error": "not_in_channel"}))
    code, out = await cli(monkeypatch, capsys, settings, "resend", "--message", str(message_id))
    assert code == 1 and "not_in_channel" in out and "stays unknown" in out
    [note] = await rows(settings.database_url, NOTIFICATION)
    assert note["notify_outcome"] == "unknown" and "not_in_channel" in note["notify_error"]
    code, out = await cli(monkeypatch, capsys, settings, "resend", "--message", "999999")
    assert code == 1 and "no message 999999" in out
    assert fake_slack.count("POST", POST_MESSAGE) == 2

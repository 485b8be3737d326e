"""Fixtures and helpers of the job-pipeline tests (post-process and draft send): webhooks
stored through the ASGI app with its scheduler off, then the job runner run by hand with a
clock the test moves.  The real clients talk to fake OpenAI, Slack, EmailBison and Unipile
servers on 127.0.0.1.  ``settings`` and ``workspace`` here override the suite-wide ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler.handlers import REGISTRY, JobContext
from scheduler.queue import Job, list_jobs
from scheduler.runner import JobRunner
from sql import Database, Row
from tests.conftest import AppClient, encode, fixture_json, make_settings, rows
from tests.crons_support import Clock
from tests.fakes import FakeServer, Reply, chat_completion

EMAIL_JOB = "EMAIL_INBOUND_POST_PROCESS"
DRAFT_TEXT = "Hi Jordan, happy to send pricing. Does Tuesday at 10 work for a quick call?"
REPLY_FIXTURE = "emailbison/lead_replied.json"
UNIPILE_ACCOUNT = "dfXlh46vQYCsMbVarumWlg"
ADMIN = {"Authorization": "Bearer admin-test-token"}


@pytest.fixture
def extra_env() -> dict[str, str]:
    """Settings a test changes with ``@pytest.mark.parametrize("extra_env", [{…}])``."""
    return {}


@pytest.fixture
def settings(
    database_url: str,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    extra_env: dict[str, str],
) -> Settings:
    env = {
        "HOOKGATE_SCHEDULER": "0",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"{fake_openai.url}/v1",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "UNIPILE_BASE_URL": fake_unipile.url,
        "UNIPILE_API_KEY": "unipile-test-key",
        "EMAILBISON_TIMEOUT_MS": "1000",
        "SLACK_TIMEOUT_MS": "1000",
    }
    return make_settings(database_url, **(env | extra_env))


@pytest.fixture
async def workspace(db: Database, fake_emailbison: FakeServer) -> CreatedWorkspace:
    options = WorkspaceOptions(
        slack_channel="#replies",
        emailbison_api_key="eb-test-key",
        emailbison_base_url=fake_emailbison.url,
        unipile_account_id=UNIPILE_ACCOUNT,
        ghl_location_id="Lq8Vn3Zt6Hc1Wm5Kx9Pb",
    )
    return await create_workspace(db, "Acme Outbound", options)


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def runtime(client: AppClient, clock: Clock) -> Runtime:
    runtime: Runtime = client.app.state.runtime
    runtime.clock = clock
    return runtime


def script_model(openai: FakeServer, *answers: str) -> None:
    """The fake model answers the next calls with ``answers`` in turn (the last repeats)."""
    replies = [Reply(json=chat_completion(answer)) for answer in answers]
    openai.script("POST", "/v1/chat/completions", *replies)


async def deliver(
    client: AppClient, workspace: CreatedWorkspace, provider: str, payload: dict[str, Any]
) -> int:
    answer = await client.http.post(client.url(provider, workspace), content=encode(payload))
    assert answer.status_code == 200, answer.text
    return int(answer.json()["message_id"])


def email_reply(**reply: Any) -> dict[str, Any]:
    payload = fixture_json(REPLY_FIXTURE)
    payload["data"]["reply"].update(reply)
    return payload


async def run_jobs(runtime: Runtime) -> None:
    async with JobRunner(runtime) as runner:
        await runner.run_until_idle(timeout_s=30)


async def jobs_of(runtime: Runtime, job_type: str) -> list[Row]:
    return await list_jobs(runtime.db, job_type=job_type)


async def rerun_handler(
    runtime: Runtime, job_type: str, message_id: int, workspace_id: str
) -> None:
    """Run the handler once more for a job that already succeeded (a duplicate run)."""
    spec = REGISTRY.get(job_type)
    assert spec is not None
    job = Job(0, job_type, f"{job_type}:{message_id}", workspace_id, message_id, {}, 1, 5, 0)
    await spec.handler(JobContext(runtime, "test-worker", float("inf")), job)


async def drafted(
    client: AppClient,
    runtime: Runtime,
    workspace: CreatedWorkspace,
    openai: FakeServer,
    provider: str = "emailbison",
    payload: dict[str, Any] | None = None,
    *,
    draft_answer: str = DRAFT_TEXT,
) -> int:
    """Deliver an interested reply, run its post-process job, and return its draft's id (the
    model drafts ``draft_answer``)."""
    script_model(openai, "interested", draft_answer)
    await deliver(client, workspace, provider, payload or email_reply())
    await run_jobs(runtime)
    [draft] = await rows(runtime.settings.database_url, "SELECT id FROM ai_drafts")
    return int(draft["id"])


async def press_send(client: AppClient, draft_id: int) -> Any:
    return await client.http.post(f"/api/drafts/{draft_id}/send", headers=ADMIN)


async def draft_state(settings: Settings) -> dict[str, Any]:
    [draft] = await rows(settings.database_url, "SELECT status, last_error FROM ai_drafts")
    return draft

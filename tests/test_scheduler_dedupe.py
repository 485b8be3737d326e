"""A dedupe hit through the webhook route re-enqueues a dead job and leaves pending, running and
succeeded jobs alone.  The app runs without its scheduler (``HOOKGATE_SCHEDULER=0``, a web-only
replica) so that nothing but the webhook touches the job."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from tests.conftest import AppClient, fixture_bytes, make_settings, rows
from tests.jobs_support import execute

JOB_COLUMNS = "status, attempts, last_error, locked_by"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, HOOKGATE_SCHEDULER="0")


async def set_job(database_url: str, **values: Any) -> None:
    """Put the one job in a given state, straight through the driver."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, 1))
    await execute(database_url, f"UPDATE background_jobs SET {assignments}", *values.values())


async def job_state(database_url: str) -> dict[str, Any]:
    (job,) = await rows(database_url, f"SELECT {JOB_COLUMNS} FROM background_jobs")
    return job


async def redeliver(client: AppClient, workspace: CreatedWorkspace) -> None:
    answer = await client.http.post(
        client.url("emailbison", workspace), content=fixture_bytes("emailbison/lead_replied.json")
    )
    assert answer.status_code == 200


async def test_dedupe_hit_re_enqueues_a_dead_job(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    await redeliver(client, workspace)
    await set_job(settings.database_url, status="dead", attempts=5, last_error="boom")
    await redeliver(client, workspace)
    assert await job_state(settings.database_url) == {
        "status": "pending",
        "attempts": 0,
        "last_error": None,
        "locked_by": None,
    }


@pytest.mark.parametrize(
    "state",
    [
        {"status": "pending", "attempts": 2, "last_error": "boom", "locked_by": None},
        {"status": "running", "attempts": 1, "last_error": None, "locked_by": "worker-1"},
        {"status": "succeeded", "attempts": 1, "last_error": None, "locked_by": None},
    ],
    ids=lambda state: state["status"],
)
async def test_dedupe_hit_leaves_live_and_finished_jobs_alone(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, state: dict[str, Any]
) -> None:
    await redeliver(client, workspace)
    await set_job(settings.database_url, **state)
    await redeliver(client, workspace)
    assert await job_state(settings.database_url) == state

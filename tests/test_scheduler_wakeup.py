"""A webhook that makes a job due wakes the in-process runner: the job starts at once, not at
the next poll."""

from __future__ import annotations

import asyncio
import time

import httpx2

from gateway.app import create_app
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from scheduler.runner import JobRunner
from tests.conftest import AppClient, count, fixture_bytes, make_settings


async def test_a_stored_delivery_starts_its_job_without_waiting_for_a_poll(
    database_url: str, workspace: CreatedWorkspace
) -> None:
    # One poll at start, then none for ten minutes: only the wake-up can start the job.
    settings: Settings = make_settings(database_url, JOB_POLL_INTERVAL_MS="600000")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(0.3)  # the start-up poll has come and gone
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            client = AppClient(http, app)
            sent = time.monotonic()
            answer = await http.post(
                client.url("emailbison", workspace),
                content=fixture_bytes("emailbison/lead_replied.json"),
            )
            assert answer.status_code == 200
            async with asyncio.timeout(10):
                succeeded = "status = 'succeeded'"
                while await count(database_url, "background_jobs", succeeded) < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)  # the runner's task does the work; we only look
            started_within = time.monotonic() - sent
    assert started_within < 10  # a poll would have taken 600 s
    print(f"\njob succeeded {started_within * 1000:.0f} ms after its delivery was answered")


async def test_a_storm_of_wake_ups_queues_one_claim_not_one_per_delivery(
    database_url: str,
) -> None:
    app = create_app(make_settings(database_url, HOOKGATE_SCHEDULER="0"))
    async with app.router.lifespan_context(app):
        runner = JobRunner(app.state.runtime)
        async with runner._tick_lock:  # a claim in progress: every wake-up must wait for it
            for _ in range(100):
                runner.nudge()
                await asyncio.sleep(0)  # the refill starts and waits on the lock
            refills = [t for t in asyncio.all_tasks() if t.get_name() == "jobs.refill"]
            assert len(refills) == 1
        await asyncio.wait_for(refills[0], 5)  # claims once more for the waiting wake-ups, ends

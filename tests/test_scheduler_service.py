"""The scheduler service under real time: a busy event loop skips no scheduled run, and shutdown
drains everything the process started — the alert sender mid-post and cron runs as well as job
runs — within HOOKGATE_SHUTDOWN_GRACE_S, then cancels what is left and hands back what it held."""

from __future__ import annotations

import asyncio
import time

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

from gateway.app import create_app
from gateway.runtime import Runtime
from scheduler.crons import CronResult, CronService, CronSpec
from scheduler.handlers import HandlerRegistry
from scheduler.runner import JobRunner
from scheduler.service import SchedulerService
from sql import Database
from tests.conftest import make_settings, rows
from tests.crons_support import (
    cron_settings,
    eventually,
    report_credentials_lost,
    unipile_workspace,
)
from tests.fakes import FakeServer, Reply
from tests.jobs_support import make_runtime


def service_for(
    runtime: Runtime, *specs: CronSpec, holder: str = "this-replica"
) -> SchedulerService:
    crons = CronService(runtime, list(specs), holder=holder)
    return SchedulerService(runtime, JobRunner(runtime, registry=HandlerRegistry()), crons)


async def test_a_busy_event_loop_skips_no_scheduled_run(db: Database, database_url: str) -> None:
    ran = asyncio.Event()

    async def probe(runtime: Runtime) -> CronResult:
        ran.set()
        return CronResult()

    service = service_for(
        make_runtime(db, make_settings(database_url)), CronSpec("probe", 3, 60, probe)
    )
    missed: list[str] = []

    def on_missed(event: JobExecutionEvent) -> None:
        missed.append(event.job_id)

    service.scheduler.add_listener(on_missed, EVENT_JOB_MISSED)
    await service.start()
    try:
        # The loop is busy (a CPU-bound stretch) when the tick falls due at 3 s, and for 1.5 s
        # after it: APScheduler's default 1 s misfire grace would drop that tick.
        time.sleep(4.5)  # noqa: ASYNC251
        await asyncio.wait_for(ran.wait(), 10)
    finally:
        await service.stop()
    assert missed == []


async def test_shutdown_lets_the_alert_sender_finish_its_post(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    workspace = await unipile_workspace(db, "Down Inc", "dfXlh46vQYCsMbVarumWlg")
    posted = Reply(json={"ok": True, "channel": "C1", "ts": "1.2"}, delay_s=1.0)  # Slack is slow
    fake_slack.script("POST", "/api/chat.postMessage", posted)
    settings = cron_settings(
        database_url,
        slack=fake_slack,
        unipile=fake_unipile,
        HOOKGATE_SCHEDULER="1",
        ALERTS_SEND_INTERVAL_S="1",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert await report_credentials_lost(app, workspace) == 200

        async def posting() -> bool:
            return fake_slack.count("POST", "/api/chat.postMessage") == 1

        await eventually(posting, timeout_s=10, interval_s=0.02)
    # The lifespan stopped the scheduler while the post was in flight.
    [alert] = await rows(database_url, "SELECT sent_at FROM alerts")
    assert alert["sent_at"] is not None


async def test_shutdown_cuts_a_cron_run_short_at_the_grace_and_hands_its_lease_back(
    db: Database, database_url: str
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(runtime: Runtime) -> CronResult:
        started.set()
        try:
            await asyncio.Event().wait()  # a call that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return CronResult()

    async def quick(runtime: Runtime) -> CronResult:
        return CronResult()

    runtime = make_runtime(db, make_settings(database_url, HOOKGATE_SHUTDOWN_GRACE_S="0.5"))
    service = service_for(runtime, CronSpec("stuck", 3, 3600, stuck), holder="stopping-replica")
    await service.start()
    await asyncio.wait_for(started.wait(), 10)  # the first tick, 3 s after start
    await asyncio.wait_for(service.stop(), 10)
    assert cancelled.is_set()
    [lease] = await rows(database_url, "SELECT holder, last_outcome FROM cron_leases")
    assert (lease["holder"], lease["last_outcome"]) == ("stopping-replica", "cancelled")
    # Handed back: another replica runs the tick now instead of after the 2.7 s hold.
    other = CronService(runtime, [CronSpec("stuck", 3, 3600, quick)], holder="next-replica")
    run = await other.tick("stuck")
    assert run is not None and run.outcome == "ok"

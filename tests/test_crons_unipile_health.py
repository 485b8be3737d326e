"""The unipile_health cron and the alert sender: one Slack alert per disconnected workspace per
day, across ticks, replicas, restarts, midnight, a failing Slack and the AccountStatus webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx2
import pytest

from gateway.app import create_app
from scheduler.alerts import send_due_alerts
from scheduler.crons import CronService
from scheduler.unipile_health import check_unipile_health
from sql import Database, connect
from tests.conftest import count, rows
from tests.crons_support import (
    HEALTH_INTERVAL,
    Clock,
    cron_runtime,
    cron_settings,
    disconnect,
    eventually,
    report_credentials_lost,
    slack_texts,
    unipile_workspace,
)
from tests.fakes import FakeServer, Reply, unipile_account


async def test_fifty_ticks_from_two_schedulers_send_one_alert_per_workspace(
    postgres_url: str, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    db = await connect(postgres_url)
    try:
        down = await unipile_workspace(db, "Down Inc", "acc-down")
        creds = await unipile_workspace(db, "Creds Ltd", "acc-creds")
        fine = await unipile_workspace(db, "Fine Co", "acc-fine")
    finally:
        await db.close()
    disconnect(fake_unipile, "acc-down")
    fake_unipile.script(
        "GET", "/api/v1/accounts/acc-creds", Reply(json=unipile_account("CREDENTIALS"))
    )
    settings = cron_settings(postgres_url, slack=fake_slack, unipile=fake_unipile)
    clock = Clock()
    async with cron_runtime(settings, clock) as one, cron_runtime(settings, clock) as two:
        replicas = [CronService(one, holder="replica-1"), CronService(two, holder="replica-2")]
        ran = 0
        for _ in range(50):
            runs = await asyncio.gather(*(r.tick("unipile_health") for r in replicas))
            ran += sum(run is not None for run in runs)
            assert all(run is None or run.outcome == "ok" for run in runs)
            clock.advance(HEALTH_INTERVAL)

    assert ran == 50  # exactly one replica ran each tick
    assert fake_unipile.count("GET", "/api/v1/accounts/acc-fine") == 50
    sent = dict(slack_texts(fake_slack))
    assert len(slack_texts(fake_slack)) == 2 and sorted(sent) == ["#ops-acc-creds", "#ops-acc-down"]
    assert "Down Inc" in sent["#ops-acc-down"]
    assert "disconnected (errors/disconnected_account)" in sent["#ops-acc-down"]
    assert "disconnected (status:CREDENTIALS)" in sent["#ops-acc-creds"]
    alerts = await rows(
        postgres_url, "SELECT workspace_id, kind, suppressed, sent_at FROM alerts ORDER BY kind"
    )
    assert {(a["workspace_id"], a["kind"], a["suppressed"]) for a in alerts} == {
        (down.id, "unipile_disconnected", 49),
        (creds.id, "unipile_disconnected", 49),
    }
    health = await rows(postgres_url, "SELECT workspace_id, status FROM integration_health")
    assert {(h["workspace_id"], h["status"]) for h in health} == {
        (down.id, "disconnected"),
        (creds.id, "disconnected"),
        (fine.id, "ok"),
    }


async def test_a_new_day_sends_one_more_alert(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    clock = Clock(dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC))
    async with cron_runtime(settings, clock) as runtime:
        crons = CronService(runtime)
        for _ in range(4):  # 23:30, 23:45, 00:00, 00:15: midnight falls between two ticks
            run = await crons.tick("unipile_health")
            assert run is not None and run.outcome == "ok"
            clock.advance(HEALTH_INTERVAL)
    assert len(slack_texts(fake_slack)) == 2
    days = await rows(database_url, "SELECT day, suppressed FROM alerts ORDER BY day")
    assert [(d["day"], d["suppressed"]) for d in days] == [("2026-11-22", 1), ("2026-11-23", 1)]


async def test_a_failed_slack_send_is_delivered_once_later(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    fake_slack.script(
        "POST",
        "/api/chat.postMessage",
        Reply(json={"ok": False, "error": "invalid_auth"}),  # refused: certainly not posted
        Reply(json={"ok": True, "channel": "C1", "ts": "1.2"}),
    )
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    clock = Clock()
    async with cron_runtime(settings, clock) as runtime:
        crons = CronService(runtime)
        first = await crons.tick("unipile_health")
        assert first is not None and first.detail["alerts_not_sent"] == 1
        [alert] = await rows(database_url, "SELECT * FROM alerts")
        assert alert["sent_at"] is None and alert["claimed_at"] is None  # the claim was given back
        assert alert["attempts"] == 1 and "invalid_auth" in alert["last_error"]
        for _ in range(5):
            clock.advance(HEALTH_INTERVAL)
            await crons.tick("unipile_health")
    assert fake_slack.count("POST", "/api/chat.postMessage") == 2  # the refusal, then one delivery
    [alert] = await rows(database_url, "SELECT * FROM alerts")
    assert alert["sent_at"] is not None and alert["attempts"] == 2
    assert alert["suppressed"] == 4


async def test_reconnection_sends_one_message_and_clears_the_banner(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    workspace = await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    clock = Clock()
    app = create_app(settings)
    async with cron_runtime(settings, clock) as runtime, app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        headers = {"Authorization": "Bearer admin-test-token"}
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            crons = CronService(runtime)
            await crons.tick("unipile_health")
            url = f"/api/workspaces/{workspace.id}/integrations"
            shown = (await http.get(url, headers=headers)).json()
            assert [b["integration"] for b in shown["banners"]] == ["unipile"]
            assert shown["integrations"][0]["status"] == "disconnected"

            fake_unipile.script("GET", "/api/v1/accounts/acc-down", Reply(json=unipile_account()))
            for _ in range(3):
                clock.advance(HEALTH_INTERVAL)
                await crons.tick("unipile_health")
            shown = (await http.get(url, headers=headers)).json()
            assert shown["banners"] == []
            assert shown["integrations"][0]["status"] == "ok"
            assert (await http.get(url)).status_code == 401
    texts = [text for _, text in slack_texts(fake_slack)]
    assert len(texts) == 2
    assert "disconnected" in texts[0] and "connected again" in texts[1]
    kinds = await rows(database_url, "SELECT kind FROM alerts WHERE sent_at IS NOT NULL")
    assert sorted(k["kind"] for k in kinds) == ["unipile_disconnected", "unipile_reconnected"]


async def test_account_status_webhook_writes_state_and_the_scheduler_sends_the_alert(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    workspace = await unipile_workspace(db, "Down Inc", "dfXlh46vQYCsMbVarumWlg")
    settings = cron_settings(
        database_url,
        slack=fake_slack,
        unipile=fake_unipile,
        HOOKGATE_SCHEDULER="1",
        ALERTS_SEND_INTERVAL_S="1",
        JOB_POLL_INTERVAL_MS="500",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert [await report_credentials_lost(app, workspace) for _ in range(3)] == [200] * 3
        assert fake_slack.count() == 0 and fake_unipile.count() == 0  # no outbound call
        assert await count(database_url, "integration_health", "status = 'disconnected'") == 1
        await eventually(lambda: _sent(database_url), timeout_s=5)  # alerts.send job sent it
        await report_credentials_lost(app, workspace)  # a repeat after the alert: suppressed
        await eventually(lambda: _suppressed(database_url, 1), timeout_s=3)
    [(channel, text)] = slack_texts(fake_slack)
    assert channel == "#ops-dfXlh46vQYCsMbVarumWlg" and "disconnected (CREDENTIALS)" in text


async def _sent(database_url: str) -> bool:
    return await count(database_url, "alerts", "sent_at IS NOT NULL") == 1


async def _suppressed(database_url: str, expected: int) -> bool:
    found = await rows(database_url, "SELECT suppressed FROM alerts")
    return bool(found) and found[0]["suppressed"] == expected


async def test_the_alert_sender_sends_nothing_twice(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    async with cron_runtime(settings, Clock()) as runtime:
        await CronService(runtime).tick("unipile_health")
        again = await asyncio.gather(*(send_due_alerts(runtime) for _ in range(5)))
    assert sum(sent.sent for sent in again) == 0
    assert fake_slack.count("POST", "/api/chat.postMessage") == 1


@asynccontextmanager
async def health_writes_refused(database_url: str, workspace_id: str) -> AsyncIterator[None]:
    """A real database error on one workspace's ``integration_health`` write: a trigger refuses
    it (dropped again at the end: the PostgreSQL database outlives the test)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        conn.execute(
            "CREATE TRIGGER refuse_health BEFORE INSERT ON integration_health "
            f"WHEN NEW.workspace_id = '{workspace_id}' "
            "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
        )
        conn.commit()
        conn.close()
        yield
        return
    pg = await asyncpg.connect(database_url)
    try:
        await pg.execute(
            "CREATE FUNCTION refuse_health() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk full (test)'; END $$"
        )
        await pg.execute(
            "CREATE TRIGGER refuse_health BEFORE INSERT ON integration_health FOR EACH ROW "
            f"WHEN (NEW.workspace_id = '{workspace_id}') EXECUTE FUNCTION refuse_health()"
        )
        yield
    finally:
        await pg.execute("DROP TRIGGER IF EXISTS refuse_health ON integration_health")
        await pg.execute("DROP FUNCTION IF EXISTS refuse_health()")
        await pg.close()


async def test_one_workspaces_database_error_leaves_the_other_checks_and_alerts_to_finish(
    database_url: str,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = await unipile_workspace(db, "Broken Co", "acc-broken")
    others = [await unipile_workspace(db, f"Down {i}", f"acc-down-{i}") for i in range(2)]
    fine = await unipile_workspace(db, "Fine Co", "acc-fine")
    slow = Reply(401, json={"status": 401, "type": "errors/disconnected_account"}, delay_s=0.5)
    for i in range(2):
        fake_unipile.script("GET", f"/api/v1/accounts/acc-down-{i}", slow)
    fake_unipile.script(
        "GET", "/api/v1/accounts/acc-fine", Reply(json=unipile_account(), delay_s=0.5)
    )
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    async with (
        health_writes_refused(database_url, broken.id),
        cron_runtime(settings, Clock()) as runtime,
    ):
        run = await check_unipile_health(runtime)  # the broken one fails while 3 are in flight
        assert fake_unipile.in_flight == 0  # no check outlived the run
    assert run.outcome == "ok"
    assert (run.detail["checked"], run.detail["errors"], run.detail["disconnected"]) == (3, 1, 2)
    assert run.detail["alerts_sent"] == 2
    health = await rows(database_url, "SELECT workspace_id, status FROM integration_health")
    assert {(h["workspace_id"], h["status"]) for h in health} == {
        (others[0].id, "disconnected"),
        (others[1].id, "disconnected"),
        (fine.id, "ok"),
    }
    assert sorted(channel for channel, _ in slack_texts(fake_slack)) == [
        "#ops-acc-down-0",
        "#ops-acc-down-1",
    ]
    [failure] = [r for r in caplog.records if "check of a workspace failed" in r.getMessage()]
    assert getattr(failure, "workspace_id", None) == broken.id and failure.exc_info

"""Slack's three verdicts as the alert sender lives them, on both backends: an unknown outcome is
posted once however many health and alert passes follow, recorded, and re-sent only by an
operator (``hookgate alerts resend``); a refusal is retried until it is delivered once; claims are
stamped with the database clock when taken, so a long pass beside a second sender posts nothing
twice; a claim whose sender stopped is settled as unknown, never taken over."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging

import pytest

from gateway.cli import main
from gateway.integrations import record_integration_status
from gateway.providers.base import Delivery
from gateway.quarantine import quarantine_delivery
from gateway.settings import Settings, SettingsError
from gateway.workspaces import CreatedWorkspace
from scheduler.alerts import AlertsSent, send_due_alerts
from scheduler.unipile_health import check_unipile_health
from sql import Database
from tests.conftest import make_settings, rows
from tests.crons_support import (
    HEALTH_INTERVAL,
    START,
    Clock,
    cron_runtime,
    disconnect,
    slack_texts,
    unipile_workspace,
)
from tests.fakes import FakeServer, Reply, closed_port_url

POST_MESSAGE = "/api/chat.postMessage"
SLACK_OK = Reply(json={"ok": True, "channel": "C1", "ts": "1767225600.000100"})
STALE_S = 3.5  # ALERT_CLAIM_STALE_S: just over one whole Slack post (3 x 1 s)
ALERTS = (
    "SELECT id, kind, outcome, sent_at, claimed_at, attempts, suppressed, last_error FROM alerts"
)


def slack_settings(
    database_url: str, slack: FakeServer | str, unipile: FakeServer | None = None
) -> Settings:
    """Settings whose Slack is ``slack`` (a fake, or a URL where nothing listens)."""
    url = slack if isinstance(slack, str) else slack.url
    env = {
        "HOOKGATE_SCHEDULER": "0",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": f"{url}/api/",
        "SLACK_TIMEOUT_MS": "1000",
        "ALERT_CLAIM_STALE_S": str(STALE_S),
    }
    if unipile is not None:
        env |= {"UNIPILE_BASE_URL": unipile.url, "UNIPILE_API_KEY": "unipile-test-key"}
    return make_settings(database_url, **env)


async def health_passes(settings: Settings, clock: Clock, n: int) -> None:
    """``n`` health runs (each checks Unipile, then sends what is due), then ``n`` more alert
    passes on their own, as the scheduler's two jobs would, on one replica."""
    async with cron_runtime(settings, clock) as runtime:
        for _ in range(n):
            run = await check_unipile_health(runtime)
            assert run.outcome == "ok"
            await send_due_alerts(runtime)
            clock.advance(HEALTH_INTERVAL)


async def cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings: Settings,
    *args: str,
) -> tuple[int, str]:
    """``hookgate alerts …`` in this process (the command runs its own event loop)."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("SLACK_BOT_TOKEN", settings.slack_bot_token)
    monkeypatch.setenv("SLACK_API_URL", settings.slack_api_url)
    monkeypatch.setenv("SLACK_TIMEOUT_MS", str(settings.slack_timeout_ms))
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["alerts", *args])
    return code, capsys.readouterr().out


UNKNOWN_SLACKS = [
    pytest.param(Reply(json={"ok": True}, delay_s=2.0), id="accepts-then-answers-after-timeout"),
    pytest.param(Reply(500, json={"ok": False, "error": "internal_error"}), id="answers-500"),
    pytest.param(Reply(drop=True), id="drops-the-connection-mid-request"),
]


@pytest.mark.parametrize("reply", UNKNOWN_SLACKS)
async def test_an_unknown_outcome_is_posted_once_recorded_and_resent_on_purpose(
    database_url: str,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    reply: Reply,
) -> None:
    workspace = await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    fake_slack.script("POST", POST_MESSAGE, reply)
    settings = slack_settings(database_url, fake_slack, fake_unipile)
    await health_passes(settings, Clock(), 4)

    assert fake_slack.count("POST", POST_MESSAGE) == 1  # never re-posted by hookgate itself
    [alert] = await rows(database_url, ALERTS)
    assert (alert["kind"], alert["outcome"], alert["sent_at"]) == (
        "unipile_disconnected",
        "unknown",
        None,
    )
    assert alert["attempts"] == 1 and alert["last_error"] and alert["suppressed"] == 3

    code, out = await cli(monkeypatch, capsys, settings, "list", "--unknown", "--json")
    listed = json.loads(out)
    assert code == 0 and [a["id"] for a in listed["alerts"]] == [alert["id"]]
    assert listed["alerts"][0]["workspace_id"] == workspace.id

    fake_slack.script("POST", POST_MESSAGE, SLACK_OK)  # Slack is well again; the operator acts
    code, out = await cli(monkeypatch, capsys, settings, "resend", str(alert["id"]))
    assert code == 0 and "Slack posted it" in out, out
    [resent] = await rows(database_url, ALERTS)
    assert resent["outcome"] == "sent" and resent["sent_at"] is not None
    code, out = await cli(monkeypatch, capsys, settings, "resend", str(alert["id"]))
    assert code == 1 and "was sent" in out  # a resend of a sent alert is refused
    await health_passes(settings, Clock(), 2)
    texts = slack_texts(fake_slack)
    assert len(texts) == 2 and texts[0] == texts[1]  # the first post, and the one resend


async def test_a_resend_that_is_itself_unknown_stays_unknown(
    database_url: str,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    fake_slack.script("POST", POST_MESSAGE, Reply(500, body=b"upstream down"))
    settings = slack_settings(database_url, fake_slack, fake_unipile)
    await health_passes(settings, Clock(), 1)
    [alert] = await rows(database_url, ALERTS)
    for _ in range(2):
        code, out = await cli(monkeypatch, capsys, settings, "resend", str(alert["id"]))
        assert code == 1 and "outcome unknown again" in out
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": False, "error": "invalid_auth"}))
    code, out = await cli(monkeypatch, capsys, settings, "resend", str(alert["id"]))
    assert code == 1 and "invalid_auth" in out and "stays unknown" in out
    await health_passes(settings, Clock(), 2)
    assert fake_slack.count("POST", POST_MESSAGE) == 4  # one post and three resends, nothing else
    [alert] = await rows(database_url, ALERTS)
    assert alert["outcome"] == "unknown" and "invalid_auth" in alert["last_error"]
    code, out = await cli(monkeypatch, capsys, settings, "resend", "999")
    assert code == 1 and "no alert 999" in out


NOT_SENT_SLACKS = [
    pytest.param(
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
        3,
        id="rate-limited",
    ),
    pytest.param(Reply(json={"ok": False, "error": "invalid_auth"}), 1, id="invalid-auth"),
]


@pytest.mark.parametrize(("reply", "posts_per_pass"), NOT_SENT_SLACKS)
async def test_a_refused_alert_is_retried_until_it_is_delivered_once(
    database_url: str,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    reply: Reply,
    posts_per_pass: int,
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    fake_slack.script("POST", POST_MESSAGE, reply)
    settings = slack_settings(database_url, fake_slack, fake_unipile)
    clock = Clock()
    await health_passes(settings, clock, 2)  # each run and each pass tries once more
    assert fake_slack.count("POST", POST_MESSAGE) == 4 * posts_per_pass
    [alert] = await rows(database_url, ALERTS)
    assert (alert["outcome"], alert["claimed_at"], alert["attempts"]) == (None, None, 4)

    fake_slack.script("POST", POST_MESSAGE, SLACK_OK)
    await health_passes(settings, clock, 3)
    assert fake_slack.count("POST", POST_MESSAGE) == 4 * posts_per_pass + 1
    [alert] = await rows(database_url, ALERTS)
    assert alert["outcome"] == "sent" and alert["attempts"] == 5 and alert["last_error"] is None


async def test_slack_refusing_connections_is_retried_until_delivered_once(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    await unipile_workspace(db, "Down Inc", "acc-down")
    disconnect(fake_unipile, "acc-down")
    clock = Clock()
    await health_passes(slack_settings(database_url, closed_port_url(), fake_unipile), clock, 3)
    [alert] = await rows(database_url, ALERTS)
    assert (alert["outcome"], alert["claimed_at"], alert["attempts"]) == (None, None, 6)
    assert "never connected" in alert["last_error"]

    await health_passes(slack_settings(database_url, fake_slack, fake_unipile), clock, 3)
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [alert] = await rows(database_url, ALERTS)
    assert alert["outcome"] == "sent"


async def disconnected_workspaces(db: Database, n: int) -> list[CreatedWorkspace]:
    created = []
    for i in range(n):
        workspace = await unipile_workspace(db, f"Down {i:02}", f"acc-{i:02}")
        await record_integration_status(
            db, workspace.id, "unipile", False, "errors/disconnected_account", START
        )
        created.append(workspace)
    return created


async def test_a_long_pass_beside_a_second_sender_posts_nothing_twice(
    database_url: str, db: Database, fake_slack: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider-wide disconnection with a slow Slack: one replica's pass lasts longer than the
    stale-claim window, and then another replica's sender starts passing beside it.  Each claim
    (integration and quarantine alerts alike) is stamped when it is taken (database clock), so
    the claim in flight is never stale to the other sender: nothing is posted twice, and nothing
    is settled as unknown."""
    caplog.set_level(logging.ERROR, logger="hookgate.alerts")
    workspaces = await disconnected_workspaces(db, 10)
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=0.5))
    settings = slack_settings(database_url, fake_slack)
    clock = Clock()
    async with cron_runtime(settings, clock) as one, cron_runtime(settings, clock) as two:
        for workspace in workspaces[:4]:  # and four quarantine alerts, taken at the pass's end
            row = await one.workspaces.get(workspace.id)
            assert row is not None
            delivery = Delivery(
                "emailbison", row, {}, {}, b'{"shape": "new"}', dt.datetime.now(dt.UTC), settings
            )
            await quarantine_delivery(db, delivery, "data.reply is missing")
        long_pass = asyncio.create_task(send_due_alerts(one))
        await asyncio.sleep(STALE_S + 0.2)  # the pass has outlived the stale window
        other_passes = 0
        while not long_pass.done() and other_passes < 100:
            await send_due_alerts(two)
            other_passes += 1
            await asyncio.sleep(0.1)
        await long_pass
    assert other_passes >= 1
    posts = sorted(
        (channel, text.startswith("1 delivery")) for channel, text in slack_texts(fake_slack)
    )
    expected = [(f"#ops-acc-{i:02}", False) for i in range(10)]
    expected += [(f"#ops-acc-{i:02}", True) for i in range(4)]
    assert posts == sorted(expected)  # each alert once
    alerts = await rows(database_url, ALERTS)
    assert len(alerts) == 14 and {(a["outcome"], a["attempts"]) for a in alerts} == {("sent", 1)}
    assert [r.getMessage() for r in caplog.records if "settled as unknown" in r.getMessage()] == []


async def test_a_claim_whose_sender_stopped_is_settled_unknown_not_posted_again(
    database_url: str, db: Database, fake_slack: FakeServer
) -> None:
    await disconnected_workspaces(db, 1)
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=2.0))
    settings = slack_settings(database_url, fake_slack)
    async with cron_runtime(settings, Clock()) as runtime:
        dying = asyncio.create_task(send_due_alerts(runtime))
        await fake_slack.wait_for_requests(1)
        dying.cancel()  # the sender stops mid-post: Slack may post it or not
        with pytest.raises(asyncio.CancelledError):
            await dying
        [alert] = await rows(database_url, ALERTS)
        assert alert["outcome"] is None and alert["claimed_at"] is not None
        assert (await send_due_alerts(runtime)).sent == 0  # a live claim: left alone
        await asyncio.sleep(STALE_S + 0.3)  # the database clock moves past the stale window
        fake_slack.script("POST", POST_MESSAGE, SLACK_OK)
        assert await send_due_alerts(runtime) == AlertsSent()  # settled, and nothing posted
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [alert] = await rows(database_url, ALERTS)
    assert alert["outcome"] == "unknown" and "stopped" in alert["last_error"]


def test_the_stale_window_must_outlast_one_slack_post() -> None:
    with pytest.raises(SettingsError, match="ALERT_CLAIM_STALE_S must be longer"):
        Settings.from_env({"SLACK_TIMEOUT_MS": "10000", "ALERT_CLAIM_STALE_S": "30"})
    assert Settings.from_env({"ALERT_CLAIM_STALE_S": "31"}).alert_claim_stale_s == 31

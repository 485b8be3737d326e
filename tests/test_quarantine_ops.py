"""Operating the quarantine: the admin API and its token, the ``hookgate deliveries`` commands,
the day's one Slack alert (sent by the scheduler's sender, never on the request path), the
metrics, and retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from gateway import quarantine
from gateway.cli import main as cli_main
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from scheduler.alerts import AlertsSent, send_quarantine_alerts
from sql import Database
from tests.conftest import AppClient, count, fixture_json, make_settings, rows
from tests.fakes import FakeServer, Reply
from tests.test_alerts import slack_settings
from tests.test_quarantine import (
    app_client,
    encode,
    learns_reply_id,
    override_parser,
    quarantined,
    renamed_reply,
)

ADMIN = {"Authorization": "Bearer admin-test-token"}
POST_MESSAGE = "/api/chat.postMessage"


async def test_admin_api_needs_the_admin_token_and_is_off_without_one(
    client: AppClient, database_url: str, db: Database
) -> None:
    assert (await client.http.get("/api/quarantine")).status_code == 401
    wrong = {"Authorization": "Bearer admin-test-tokem"}
    assert (await client.http.get("/api/quarantine", headers=wrong)).status_code == 401
    assert (await client.http.post("/api/quarantine/1/replay", headers=wrong)).status_code == 401
    answer = await client.http.get("/api/quarantine", headers=ADMIN)
    assert answer.status_code == 200 and answer.json() == {"success": True, "deliveries": []}

    off = make_settings(database_url, HOOKGATE_ADMIN_TOKEN="", HOOKGATE_SCHEDULER="0")
    async with app_client(off) as no_admin:
        for headers in ({}, ADMIN, {"Authorization": "Bearer "}):
            answer = await no_admin.http.get("/api/quarantine", headers=headers)
            assert answer.status_code == 403
            assert "HOOKGATE_ADMIN_TOKEN" in answer.json()["error"]


async def test_admin_api_lists_shows_replays_and_discards(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = client.url("emailbison", workspace)
    first = quarantined(await client.http.post(url, content=renamed_reply(1)))
    second = quarantined(await client.http.post(url, content=renamed_reply(2)))
    listed = (await client.http.get("/api/quarantine?status=pending", headers=ADMIN)).json()
    assert [d["id"] for d in listed["deliveries"]] == [first, second]
    assert listed["deliveries"][0]["provider"] == "emailbison"
    bad = await client.http.get("/api/quarantine?status=lost", headers=ADMIN)
    assert bad.status_code == 400

    still = await client.http.post(f"/api/quarantine/{first}/replay", headers=ADMIN)
    assert still.status_code == 422 and still.json()["status"] == "pending"
    override_parser(monkeypatch, "emailbison", learns_reply_id)
    stored = await client.http.post(f"/api/quarantine/{first}/replay", headers=ADMIN)
    assert stored.status_code == 200
    assert stored.json() | {"error": None} == {
        "success": True,
        "id": first,
        "status": "replayed",
        "event": "LEAD_REPLIED",
        "message_id": 1,
        "deduped": False,
        "ignored": False,
        "error": None,
    }
    again = await client.http.post(f"/api/quarantine/{first}/replay", headers=ADMIN)
    assert again.json()["deduped"] is True and again.json()["message_id"] == 1

    discarded = await client.http.post(f"/api/quarantine/{second}/discard", headers=ADMIN)
    assert discarded.json() == {"success": True, "id": second, "status": "discarded"}
    assert (
        await client.http.post(f"/api/quarantine/{second}/discard", headers=ADMIN)
    ).status_code == 404
    assert (await client.http.get("/api/quarantine/999", headers=ADMIN)).status_code == 404
    assert (await client.http.post("/api/quarantine/999/replay", headers=ADMIN)).status_code == 404
    assert await count(settings.database_url, "messages") == 1
    assert await count(settings.database_url, "background_jobs") == 1


async def test_admin_api_refuses_filters_it_cannot_use_and_then_replays_nothing(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A misspelt or unknown filter is a 400 naming it, never a listing or a replay of every
    delivery; ids that cannot be a row's are a 404, never a database error."""
    url = client.url("emailbison", workspace)
    delivery = quarantined(await client.http.post(url, content=renamed_reply(1)))
    override_parser(monkeypatch, "emailbison", learns_reply_id)  # a replay would now store it
    for query, error in (
        ("stauts=pending", "unknown query parameter 'stauts'"),
        ("provider=mailchimp", "provider must be one of emailbison, ghl"),
        ("workspace=acme", "not a workspace id"),
        ("after_id=10000000000000000000", "after_id must be between 0 and"),
    ):
        listed = await client.http.get(f"/api/quarantine?{query}", headers=ADMIN)
        assert listed.status_code == 400 and error in listed.json()["error"], query
    for query in ("provder=emailbison", "provider=mailchimp"):
        replayed = await client.http.post(f"/api/quarantine/replay?{query}", headers=ADMIN)
        assert replayed.status_code == 400 and replayed.json()["success"] is False
    assert await count(settings.database_url, "webhook_quarantine", "status = 'pending'") == 1
    assert await count(settings.database_url, "messages") == 0

    for path in ("/api/quarantine/0", f"/api/quarantine/{10**19 + delivery}"):
        missing = await client.http.get(path, headers=ADMIN)
        assert missing.status_code == 404 and missing.json()["success"] is False
    huge = await client.http.post(f"/api/drafts/{10**20}/send", headers=ADMIN)
    assert huge.status_code == 404 and huge.json()["success"] is False
    wrong_method = await client.http.delete(f"/api/quarantine/{delivery}", headers=ADMIN)
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["allow"]
    assert wrong_method.json() == {"success": False, "error": "Method Not Allowed"}


async def test_deliveries_commands_list_show_replay_and_discard(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")

    async def hookgate(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(cli_main, list(argv))
        return code, capsys.readouterr().out

    url = client.url("emailbison", workspace)
    for marker in (1, 2):
        quarantined(await client.http.post(url, content=renamed_reply(marker)))

    code, out = await hookgate("deliveries", "list", "--status", "pending", "--json")
    assert code == 0 and [d["id"] for d in json.loads(out)] == [1, 2]
    code, out = await hookgate("deliveries", "show", "1")
    assert code == 0
    assert "data.reply.id is missing" in out
    assert '"reply_id": 1608263' in out and workspace.tokens["emailbison"] not in out
    code, out = await hookgate("deliveries", "replay", "1")
    assert code == 1 and "delivery 1 still unreadable (pending)" in out

    override_parser(monkeypatch, "emailbison", learns_reply_id)
    code, out = await hookgate("deliveries", "replay", "--all", "--provider", "emailbison")
    assert code == 0
    assert "delivery 1 replayed: stored message 1 (LEAD_REPLIED)" in out
    assert "delivery 2 replayed: message 1 was already stored (deduped)" in out
    code, out = await hookgate("deliveries", "replay", "1")
    assert code == 0 and "already stored (deduped), nothing new" in out
    code, out = await hookgate("deliveries", "discard", "1")
    assert code == 1 and "no pending quarantined delivery 1" in out
    assert await count(settings.database_url, "messages") == 1
    replayed = await rows(
        settings.database_url, "SELECT id, status, replayed_message_id FROM webhook_quarantine"
    )
    assert sorted(replayed, key=lambda r: int(r["id"])) == [
        {"id": 1, "status": "replayed", "replayed_message_id": 1},
        {"id": 2, "status": "replayed", "replayed_message_id": 1},
    ]


def unreadable_smartlead() -> bytes:
    payload = fixture_json("smartlead/email_reply.json")
    del payload["event_type"]
    return encode(payload)


async def test_one_slack_alert_for_the_days_first_quarantined_delivery(
    database_url: str, db: Database, workspace: CreatedWorkspace, fake_slack: FakeServer
) -> None:
    settings = make_settings(
        database_url,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_API_URL=f"{fake_slack.url}/api/",
        HOOKGATE_SCHEDULER="0",
    )
    async with app_client(settings) as client:
        runtime = client.app.state.runtime
        slack = runtime.clients.slack
        for content in (renamed_reply(1), renamed_reply(2), unreadable_smartlead()):
            provider = "smartlead" if content == unreadable_smartlead() else "emailbison"
            quarantined(await client.http.post(client.url(provider, workspace), content=content))
        assert fake_slack.requests("POST", POST_MESSAGE) == []  # nothing on the request path
        [alert] = await rows(database_url, "SELECT kind, suppressed, sent_at FROM alerts")
        assert alert == {"kind": "quarantine", "suppressed": 2, "sent_at": None}

        now = runtime.clock()
        assert (await send_quarantine_alerts(db, slack)).sent == 1
        [sent] = fake_slack.requests("POST", POST_MESSAGE)
        assert sent.json["channel"] == "#replies"
        text = sent.json["text"]
        assert text.startswith(
            "2 deliveries from EmailBison and 1 delivery from SmartLead could not be read"
        )
        assert f"hookgate deliveries list --workspace {workspace.id}" in text

        # The rest of the day: counted, never sent again.
        quarantined(
            await client.http.post(client.url("emailbison", workspace), content=renamed_reply(3))
        )
        assert await send_quarantine_alerts(db, slack) == AlertsSent()
        assert len(fake_slack.requests("POST", POST_MESSAGE)) == 1
        [alert] = await rows(database_url, "SELECT suppressed, message FROM alerts")
        assert alert == {"suppressed": 3, "message": text}

        # The next day's first one is a new alert; a refused post is retried on a later tick.
        tomorrow = now + dt.timedelta(days=1)
        runtime.clock = lambda: tomorrow
        quarantined(
            await client.http.post(client.url("emailbison", workspace), content=renamed_reply(4))
        )
        fake_slack.script(
            "POST",
            POST_MESSAGE,
            Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
            Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
            Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
            Reply(200, json={"ok": True, "channel": "C1", "ts": "1.2"}),
        )
        assert await send_quarantine_alerts(db, slack) == AlertsSent(not_sent=1)
        failed = await rows(
            database_url,
            "SELECT attempts, last_error FROM alerts WHERE day = $1",
            tomorrow.date().isoformat(),
        )
        assert failed[0]["attempts"] == 1 and "rate limited" in failed[0]["last_error"]
        assert (await send_quarantine_alerts(db, slack)).sent == 1
        assert await send_quarantine_alerts(db, slack) == AlertsSent()
    texts = [r.json["text"] for r in fake_slack.requests("POST", POST_MESSAGE)]
    assert len(texts) == 5 and texts[-1].startswith("1 delivery from EmailBison")  # 3 refused


async def test_a_quarantine_alert_of_unknown_outcome_is_posted_once(
    database_url: str, db: Database, workspace: CreatedWorkspace, fake_slack: FakeServer
) -> None:
    settings = slack_settings(database_url, fake_slack)
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=2.0))
    async with app_client(settings) as client:
        slack = client.app.state.runtime.clients.slack
        url = client.url("emailbison", workspace)
        quarantined(await client.http.post(url, content=renamed_reply(1)))
        assert await send_quarantine_alerts(db, slack) == AlertsSent(unknown=1)
        fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}))
        quarantined(await client.http.post(url, content=renamed_reply(2)))
        for _ in range(3):
            assert await send_quarantine_alerts(db, slack) == AlertsSent()
    assert fake_slack.count("POST", POST_MESSAGE) == 1
    [alert] = await rows(
        database_url, "SELECT outcome, message, suppressed, last_error FROM alerts"
    )
    assert (alert["outcome"], alert["suppressed"]) == ("unknown", 1)
    assert alert["message"].startswith("1 delivery from EmailBison")  # what a resend would post
    assert "timed out" in alert["last_error"]


async def test_metrics_count_quarantined_deliveries_by_provider(
    client: AppClient, workspace: CreatedWorkspace
) -> None:
    url = client.url("emailbison", workspace)
    for marker in (1, 1, 2):
        quarantined(await client.http.post(url, content=renamed_reply(marker)))
    metrics = (await client.http.get("/metrics")).text
    assert 'hookgate_quarantined_total{provider="emailbison"} 3.0' in metrics
    assert 'hookgate_webhooks_total{outcome="quarantined",provider="emailbison"} 3.0' in metrics


async def test_retention_purges_replayed_and_discarded_rows_and_keeps_pending_ones(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = client.url("emailbison", workspace)
    ids = [quarantined(await client.http.post(url, content=renamed_reply(i))) for i in range(3)]
    override_parser(monkeypatch, "emailbison", learns_reply_id)
    assert (await quarantine.replay(db, settings, ids[0])) is not None
    assert await quarantine.discard(db, ids[1])

    [pending] = await quarantine.pending_deliveries(db)
    assert (pending["id"], pending["workspace_name"], pending["provider"]) == (
        ids[2],
        "Acme Outbound",
        "emailbison",
    )
    now = dt.datetime.now(dt.UTC)
    days = settings.quarantine_retention_days
    assert await quarantine.purge_quarantine(db, now + dt.timedelta(days=days - 1), days) == 0
    assert await quarantine.purge_quarantine(db, now + dt.timedelta(days=days + 1), days) == 2
    left = await rows(settings.database_url, "SELECT id, status FROM webhook_quarantine")
    assert left == [{"id": ids[2], "status": "pending"}]
    assert await count(settings.database_url, "messages") == 1

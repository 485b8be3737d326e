"""A seeded run for the console tests, through the real paths: two workspaces; deliveries from
every provider through the ASGI app (stored, a deduped copy, unreadable ones quarantined); the
job runner runs the post-process jobs against the fake OpenAI (each AI call attributed to its job
type) and a job no handler exists for, which dies; the Unipile health cron finds a LinkedIn
account disconnected and alerts once, holding back the repeats.  Slack answers two posts with a
500 (outcome unknown): an interested lead's notification and the disconnection alert."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import httpx2

from gateway.app import create_app
from gateway.delivery_stats import DeliveryStats
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler import queue
from scheduler.crons import CronService
from scheduler.queue_samples import sample_queue_depth
from scheduler.runner import JobRunner
from sql import database_now
from tests.conftest import encode, fixture_json, rows
from tests.crons_support import disconnect
from tests.fakes import FakeServer, Reply, chat_completion

UNIPILE_ACCOUNT = "dfXlh46vQYCsMbVarumWlg"  # the Unipile fixture's account
SMARTLEAD_SECRET = "3f6c8d21-a619-48c2-93f6-72936ee16f38"  # the SmartLead fixtures' secret_key
REPLY_ID = 1_608_263  # the EmailBison fixture's reply id
POST_MESSAGE = "/api/chat.postMessage"
SLACK_OK = Reply(json={"ok": True, "channel": "C1", "ts": "1767225600.000100"})
SLACK_DOWN = Reply(500, json={"ok": False, "error": "internal_error"})
DEAD_JOB_TYPE = "CRM_EXPORT"  # no handler is registered for it: its one attempt fails


@dataclasses.dataclass(frozen=True)
class Seeded:
    acme: CreatedWorkspace
    globex: CreatedWorkspace
    dead_job_id: int
    unreadable: list[int]  # quarantined delivery ids, oldest first
    readable: int  # a quarantined delivery today's parser reads
    unknown_alert: int  # Slack answered its post with a 500
    unknown_notification: int  # the message whose interested-lead notification that befell


def unreadable(reply_id: str) -> dict[str, Any]:
    return {"event": {"type": "LEAD_REPLIED"}, "data": {"reply": {"id": reply_id}}}


def email_reply(reply_id: int, text: str) -> dict[str, Any]:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"].update(id=reply_id, text_body=text)
    return payload


async def _deliver(
    http: httpx2.AsyncClient, workspace: CreatedWorkspace, provider: str, payload: dict[str, Any]
) -> dict[str, Any]:
    url = f"/webhooks/{provider}/{workspace.id}?token={workspace.tokens[provider]}"
    answer = await http.post(url, content=encode(payload))
    assert answer.status_code in (200, 202), answer.text
    return dict(answer.json())


async def seed(settings: Settings, unipile: FakeServer, slack: FakeServer) -> Seeded:
    """Seed ``settings``' database (its scheduler off; OpenAI, Slack and Unipile the fakes)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        acme = await create_workspace(
            runtime.db,
            "Acme Outbound",
            WorkspaceOptions(
                slack_channel="#ops-acme",
                unipile_account_id=UNIPILE_ACCOUNT,
                smartlead_secret=SMARTLEAD_SECRET,
            ),
        )
        globex = await create_workspace(
            runtime.db, "Globex Sales", WorkspaceOptions(slack_channel="#ops-globex")
        )
        interested = email_reply(REPLY_ID + 3, "Yes, let's talk on Tuesday.")
        interested["data"]["reply"]["interested"] = True
        deliveries = [
            (acme, "emailbison", email_reply(REPLY_ID, "Can you send pricing?")),
            (acme, "emailbison", email_reply(REPLY_ID + 1, "Not now, thanks.")),
            (acme, "emailbison", email_reply(REPLY_ID, "Can you send pricing?")),  # deduped
            (acme, "unipile", fixture_json("unipile/message_received_inbound.json")),
            (acme, "smartlead", fixture_json("smartlead/email_reply.json")),
            (globex, "instantly", fixture_json("instantly/reply_received.json")),
            (globex, "emailbison", fixture_json("emailbison/email_sent.json")),
            (acme, "emailbison", unreadable("not-a-number")),
            (globex, "emailbison", unreadable("nor-this")),
        ]
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://console") as http:
            slack.script("POST", POST_MESSAGE, SLACK_DOWN, SLACK_OK)
            notified = (await _deliver(http, acme, "emailbison", interested))["message_id"]
            await _run_jobs(runtime)  # its notification's outcome: unknown
            answers = [await _deliver(http, *delivery) for delivery in deliveries]
        await sample_queue_depth(runtime.db)  # what the scheduler's sampler sees now
        quarantined = [answer["delivery_id"] for answer in answers if answer.get("quarantined")]
        fixed = await runtime.db.fetch_one(  # as a parser before a fix left it: readable now
            "insert_quarantine",
            workspace_id=globex.id,
            provider="emailbison",
            body_hash="seeded-before-the-fix",
            raw_body=encode(email_reply(REPLY_ID + 2, "Tuesday works.")),
            headers="{}",
            error="cannot read this emailbison payload: data.reply.text_body: unexpected",
            now=runtime.clock(),
        )
        assert fixed is not None
        dead_job_id = await queue.enqueue(
            runtime.db,
            DEAD_JOB_TYPE,
            f"{DEAD_JOB_TYPE}:{acme.id}",
            max_attempts=1,
            workspace_id=acme.id,
        )
        assert dead_job_id is not None
        await _run_jobs(runtime)
        disconnect(unipile, UNIPILE_ACCOUNT)
        slack.script("POST", POST_MESSAGE, SLACK_DOWN, SLACK_OK)  # the first alert: unknown
        crons = CronService(runtime)
        for _ in range(3):  # one alert, then two repeats it holds back
            await crons.run_now("unipile_health")
        [unknown] = await runtime.db.fetch_all(
            "list_alerts", outcome="unknown", workspace_id=None, limit=2
        )
    return Seeded(
        acme, globex, dead_job_id, quarantined, int(fixed["id"]), int(unknown["id"]), notified
    )


async def _run_jobs(runtime: Runtime) -> None:
    async with JobRunner(runtime) as runner:
        await runner.run_until_idle(timeout_s=60)


def _shift(table: str, where: str, *columns: str) -> str:
    """PostgreSQL: move the times of ``columns`` in the rows a round stored (``where``, $1 the
    round's start) $2 minutes into the past."""
    moved = ", ".join(f"{c} = {c} - make_interval(mins => $2)" for c in columns)
    return f"UPDATE {table} SET {moved} WHERE {where}"


_SHIFTS = (
    _shift("messages", "created_at >= $1", "created_at"),
    _shift(
        "background_jobs", "created_at >= $1", "created_at", "updated_at", "run_at", "finished_at"
    ),
    _shift("ai_interactions", "created_at >= $1", "created_at"),
    _shift("webhook_quarantine", "received_at >= $1", "received_at", "updated_at"),
    _shift("job_queue_samples", "minute >= date_trunc('minute', $1::timestamptz)", "minute"),
)


def _round_traffic(
    minute: int, acme: CreatedWorkspace, globex: CreatedWorkspace
) -> list[tuple[CreatedWorkspace, str, dict[str, Any]]]:
    """Minute ``minute``'s deliveries: a morning wave of replies, a copy now and then, opens that
    are not messages, and a burst of payloads nobody can read (a provider changed its format)."""
    replies = 2 + round(2.5 * (1 + math.sin(minute / 7)))
    found: list[tuple[CreatedWorkspace, str, dict[str, Any]]] = []
    for n in range(replies):
        reply_id = 2_000_000 + minute * 100 + n
        found.append(
            (acme if n % 3 else globex, "emailbison", email_reply(reply_id, "Sounds good"))
        )
    if minute % 4 == 0:
        linkedin = fixture_json("unipile/message_received_inbound.json")
        linkedin["message_id"] = f"lapse-{minute}"
        found.append((acme, "unipile", linkedin))
    if minute % 3 == 1:
        found.append(found[0])  # the provider delivers a reply twice
    found.extend((globex, "emailbison", OPENED) for _ in range(minute % 5))
    if 34 <= minute <= 38:
        found.extend((acme, "emailbison", unreadable(f"v2-{minute}-{n}")) for n in range(3))
    return found


OPENED = {"event": {"type": "EMAIL_OPENED"}, "data": {}}
DEATHS = (12, 27, 28, 45)  # minutes of the busy hour in which a job dies
STALE_TOKEN = range(41, 47)  # minutes in which a sender still uses an old token (answered 401)
EARLIER_H = 6  # one round of traffic this many hours before the busy hour (in 24h, not in 1h)
EARLIER_ROUND = 1000  # its traffic: _round_traffic(EARLIER_ROUND)


async def _stale_token(http: httpx2.AsyncClient, workspace: CreatedWorkspace, minute: int) -> None:
    url = f"/webhooks/instantly/{workspace.id}?token=rotated-last-week"
    payload = fixture_json("instantly/reply_received.json")
    for _ in range(1 + minute % 3):
        assert (await http.post(url, content=encode(payload))).status_code == 401


async def busy_hour(settings: Settings, seeded: Seeded, openai: FakeServer, minutes: int) -> None:
    """``minutes`` minutes of traffic in a few seconds (PostgreSQL), and one round
    ``EARLIER_H`` hours before them: each round is a real run — deliveries through the app, a
    queue sample, the job runner with the model answering in 20-90 ms — after which what the
    round stored is moved back to its minute, the last one ending in the minute the busy hour
    began.  The delivery stats are recorded on a clock that reads the round's minute."""
    # The seed's queue sample is moved out of the way of the minutes the rounds are moved to.
    await rows(
        settings.database_url, "UPDATE job_queue_samples SET minute = minute - '2 h'::interval"
    )
    app = create_app(settings)
    rounds = [(EARLIER_ROUND, EARLIER_H * 60 + minutes - 1)]
    rounds += [(minute, minutes - 1 - minute) for minute in range(minutes)]
    async with app.router.lifespan_context(app):
        runtime: Runtime = app.state.runtime
        base = int((await database_now(runtime.db)).timestamp()) // 60
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://console") as http:
            for minute, before_base in rounds:
                started = await database_now(runtime.db)
                back = int(started.timestamp()) // 60 - base + before_base  # minutes to move
                target_s = (base - before_base) * 60 + 30
                runtime.delivery_stats = DeliveryStats(clock=lambda t=target_s: float(t))
                delay = 0.02 + 0.07 * (1 + math.sin(minute / 5)) / 2
                openai.script(
                    "POST", "/v1/chat/completions", Reply(json=chat_completion(), delay_s=delay)
                )
                for delivery in _round_traffic(minute, seeded.acme, seeded.globex):
                    await _deliver(http, *delivery)
                if minute in STALE_TOKEN:
                    await _stale_token(http, seeded.globex, minute)
                if minute in DEATHS:
                    await queue.enqueue(
                        runtime.db,
                        DEAD_JOB_TYPE,
                        f"{DEAD_JOB_TYPE}:lapse-{minute}",
                        max_attempts=1,
                    )
                await sample_queue_depth(runtime.db)
                await _run_jobs(runtime)
                assert await runtime.delivery_stats.flush(runtime.db)
                for shift in _SHIFTS:
                    await rows(settings.database_url, shift, started, back)

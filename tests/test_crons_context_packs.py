"""The context_packs cron: bounded concurrency, resumable, a failed lead fails its item only, and a
real PostgreSQL connection lost mid-run opens the circuit breaker; the next run finishes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from gateway.api import create_context_pack
from gateway.app import create_app
from gateway.cli import main
from gateway.events import Lead, Message
from gateway.ingest import store_message
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler.context_packs import ContextPackBuilder
from scheduler.crons import CronService
from sql import Database, connect
from sql.migrations import discover
from tests.conftest import count, rows, run_blocking
from tests.crons_support import START, Clock, cron_runtime, cron_settings, eventually
from tests.fakes import FakeServer, Reply, chat_completion
from tests.tcp_proxy import TcpProxy

ADMIN = {"Authorization": "Bearer admin-test-token"}


async def add_leads(db: Database, workspace: CreatedWorkspace, n: int) -> list[int]:
    """``n`` leads, each with an inbound reply; their ids in order."""
    for i in range(n):
        lead = Lead(email=f"lead{i}@example.com", first_name=f"Lead{i}", company="Acme")
        message = Message(
            event="LEAD_REPLIED",
            provider="emailbison",
            channel="email",
            direction="inbound",
            key_column="email_bison_reply_id",
            key_value=f"reply-{i}",
            lead=lead,
            subject="Re: pilot",
            body=f"Lead {i} here: send me pricing for 20 seats.",
        )
        await store_message(db, workspace.id, message, now=START, max_attempts=5)
    found = await db.fetch_all(
        "context_pack_leads", workspace_id=workspace.id, pack_id=0, after_id=0, limit=1000
    )
    ids = [int(r["id"]) for r in found]
    assert len(ids) == n
    return ids


def prompted_leads(openai: FakeServer, start: int = 0) -> list[int]:
    """The lead ids named in the prompts the fake OpenAI received (from request ``start`` on)."""
    found = []
    for request in openai.requests("POST", "/v1/chat/completions")[start:]:
        prompt = request.json["messages"][1]["content"]
        match = re.match(r"Lead #(\d+):", prompt)
        assert match is not None, prompt
        found.append(int(match.group(1)))
    return found


def slow_summaries(openai: FakeServer, delay_s: float) -> None:
    reply = Reply(json=chat_completion("Wants pricing for 20 seats."), delay_s=delay_s)
    openai.script("POST", "/v1/chat/completions", reply)


async def test_packs_are_requested_over_the_api_and_built_with_bounded_concurrency(
    database_url: str, db: Database, fake_openai: FakeServer
) -> None:
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    leads = await add_leads(db, workspace, 10)
    slow_summaries(fake_openai, 0.1)
    settings = cron_settings(database_url, openai=fake_openai)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            url = f"/api/workspaces/{workspace.id}/context-packs"
            assert (await http.post(url)).status_code == 401
            first = await http.post(url, headers=ADMIN)
            again = await http.post(url, headers=ADMIN)
            missing = await http.post("/api/workspaces/ws_nope/context-packs", headers=ADMIN)
        assert first.status_code == 201 and first.json()["pack"]["status"] == "pending"
        assert again.status_code == 200 and again.json()["pack"]["id"] == first.json()["pack"]["id"]
        assert missing.status_code == 404
        run = await app.state.crons.run_now("context_packs")
    assert run.outcome == "ok" and run.detail == {
        "packs_done": 1,
        "leads_done": 10,
        "leads_failed": 0,
    }
    assert fake_openai.max_in_flight == 3  # INSIGHTS_CONTEXT_PACK_LEAD_CONCURRENCY, and no more
    assert sorted(prompted_leads(fake_openai)) == leads
    [pack] = await rows(database_url, "SELECT * FROM context_packs")
    assert (pack["status"], pack["leads_total"], pack["leads_done"]) == ("done", 10, 10)
    items = await rows(database_url, "SELECT lead_id, status, summary FROM context_pack_items")
    assert sorted(i["lead_id"] for i in items) == leads
    assert {(i["status"], i["summary"]) for i in items} == {("done", "Wants pricing for 20 seats.")}
    sources = await rows(database_url, "SELECT source, purpose, status FROM ai_interactions")
    assert len(sources) == 10
    assert {tuple(s.values()) for s in sources} == {
        ("cron:context_packs", "context_pack_summary", "ok")
    }


async def test_a_failing_lead_fails_its_item_not_the_run(
    database_url: str, db: Database, fake_openai: FakeServer
) -> None:
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    await add_leads(db, workspace, 4)
    ok = Reply(json=chat_completion("Fine."))
    fake_openai.script("POST", "/v1/chat/completions", ok, Reply(500, json={"error": {}}), ok)
    settings = cron_settings(
        database_url, openai=fake_openai, INSIGHTS_CONTEXT_PACK_LEAD_CONCURRENCY="1"
    )
    await create_context_pack(db, workspace.id, START)
    async with cron_runtime(settings, Clock()) as runtime:
        run = await CronService(runtime).tick("context_packs")
    assert run is not None and run.outcome == "ok"
    assert run.detail == {"packs_done": 1, "leads_done": 4, "leads_failed": 1}
    [pack] = await rows(database_url, "SELECT status, leads_done, leads_failed FROM context_packs")
    assert (pack["status"], pack["leads_done"], pack["leads_failed"]) == ("done", 4, 1)
    failed = await rows(
        database_url, "SELECT error FROM context_pack_items WHERE status = 'failed'"
    )
    assert len(failed) == 1 and "status 500" in failed[0]["error"]


async def test_a_rerun_reads_in_batches_and_skips_finished_leads(
    database_url: str, db: Database, fake_openai: FakeServer
) -> None:
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    leads = await add_leads(db, workspace, 7)
    found = await create_context_pack(db, workspace.id, START)
    assert found is not None
    pack_id = found[0]["id"]
    for lead_id in leads[:3]:  # finished by an earlier run
        await db.fetch_one(
            "insert_context_pack_item",
            pack_id=pack_id,
            lead_id=lead_id,
            status="done",
            summary="earlier",
            error=None,
            now=START,
        )
    settings = cron_settings(database_url, openai=fake_openai)
    async with cron_runtime(settings, Clock()) as runtime:
        result = await ContextPackBuilder(runtime, batch_size=2).run()
    assert result.outcome == "ok"
    assert sorted(prompted_leads(fake_openai)) == leads[3:]
    assert await count(database_url, "context_pack_items") == 7
    [pack] = await rows(database_url, "SELECT status FROM context_packs")
    assert pack["status"] == "done"


def test_packs_create_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"

    async def setup() -> str:
        db = await connect(url)
        try:
            await db.apply_migrations(discover(db.dialect))
            return (await create_workspace(db, "Acme", WorkspaceOptions())).id
        finally:
            await db.close()

    workspace_id = run_blocking(setup())
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["packs", "create", workspace_id, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["packs", "create", workspace_id, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert first["created"] is True and second["created"] is False
    assert first["pack"]["id"] == second["pack"]["id"]
    assert main(["packs", "create", "ws_missing"]) == 2


async def pack_behind_proxy(postgres_url: str, n_leads: int) -> tuple[list[int], TcpProxy]:
    """A workspace with ``n_leads`` leads and an open pack, and a started proxy to PostgreSQL
    that the test can cut; the leads' ids."""
    db = await connect(postgres_url)
    try:
        workspace = await create_workspace(db, "Acme", WorkspaceOptions())
        leads = await add_leads(db, workspace, n_leads)
        await create_context_pack(db, workspace.id, START)
    finally:
        await db.close()
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    return leads, proxy


@pytest.mark.fault
async def test_a_lost_database_opens_the_breaker_and_the_next_run_finishes_the_pack(
    postgres_url: str, fake_openai: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    leads, proxy = await pack_behind_proxy(postgres_url, 30)
    slow_summaries(fake_openai, 0.05)
    settings = cron_settings(
        proxy.url(postgres_url),
        openai=fake_openai,
        CONTEXT_PACK_BREAKER_THRESHOLD="3",
        CONTEXT_PACK_RETRY_BASE_MS="20",
        DATABASE_TIMEOUT_S="1",
    )
    clock = Clock()
    try:
        async with cron_runtime(settings, clock) as runtime:
            crons = CronService(runtime)
            running = asyncio.create_task(crons.tick("context_packs"))

            async def some_done() -> bool:
                return await count(postgres_url, "context_pack_items") >= 6

            await eventually(some_done, timeout_s=15, interval_s=0.02)
            await proxy.cut()
            cut_at = time.monotonic()
            first = await asyncio.wait_for(running, timeout=20)
            ended_after_s = time.monotonic() - cut_at
            finished_first = {r["lead_id"] for r in await rows(postgres_url, _ITEMS)}
            asked_first = fake_openai.count()

            await proxy.restore()
            clock.advance(dt.timedelta(seconds=300))
            second = await crons.tick("context_packs")
    finally:
        await proxy.close()

    assert first is not None and first.outcome == "breaker_open"
    assert first.breaker_opened_at == START
    assert ended_after_s < 5  # the breaker ended the run; it did not fail lead after lead
    breaker_lines = [
        r for r in caplog.records if getattr(r, "event", "") == "context_pack_breaker_open"
    ]
    assert len(breaker_lines) == 1 and "circuit breaker open" in breaker_lines[0].getMessage()
    assert 6 <= len(finished_first) < 30

    assert second is not None and second.outcome == "ok"
    redone = set(prompted_leads(fake_openai, asked_first)) & finished_first
    assert redone == set()  # finished leads were not summarised again
    items = await rows(postgres_url, _ITEMS)
    assert sorted(r["lead_id"] for r in items) == leads  # each lead once
    [pack] = await rows(postgres_url, "SELECT status, leads_done FROM context_packs")
    assert (pack["status"], pack["leads_done"]) == ("done", 30)
    assert fake_openai.max_in_flight <= 3
    [lease] = await rows(postgres_url, "SELECT * FROM cron_leases")
    assert lease["last_outcome"] == "ok" and lease["breaker_opened_at"] == START


_ITEMS = "SELECT lead_id FROM context_pack_items ORDER BY lead_id"


@pytest.mark.fault
async def test_a_blip_shorter_than_the_retry_budget_never_opens_the_breaker(
    postgres_url: str, fake_openai: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Six lead workers lose PostgreSQL at once for half a second.  Each step counts its own
    failures, so the workers' simultaneous failures do not add up: every step waits the blip
    out within its retry budget, and the run finishes the pack."""
    caplog.set_level(logging.WARNING, logger="hookgate.context_packs")
    leads, proxy = await pack_behind_proxy(postgres_url, 40)
    slow_summaries(fake_openai, 0.05)
    settings = cron_settings(
        proxy.url(postgres_url),
        openai=fake_openai,
        INSIGHTS_CONTEXT_PACK_LEAD_CONCURRENCY="6",
        CONTEXT_PACK_BREAKER_THRESHOLD="5",
        CONTEXT_PACK_RETRY_BASE_MS="100",
        DATABASE_TIMEOUT_S="1",
    )
    try:
        async with cron_runtime(settings, Clock()) as runtime:
            builder = ContextPackBuilder(runtime)
            assert builder.breaker.retry_budget_s == pytest.approx(0.75)  # 0.5 x (0.1+0.2+0.4)
            running = asyncio.create_task(builder.run())

            async def some_done() -> bool:
                return await count(postgres_url, "context_pack_items") >= 6

            await eventually(some_done, timeout_s=15, interval_s=0.02)
            await proxy.cut()  # every worker's next step fails at once
            await asyncio.sleep(0.5)
            await proxy.restore()
            result = await asyncio.wait_for(running, timeout=30)
    finally:
        await proxy.close()

    assert result.outcome == "ok" and result.breaker_opened_at is None
    retried = [r for r in caplog.records if "lost the database; retrying" in r.getMessage()]
    assert len(retried) >= 6  # the blip did hit the workers' steps, several times in all
    assert result.detail["leads_done"] == 40
    items = await rows(postgres_url, _ITEMS)
    assert sorted(r["lead_id"] for r in items) == leads
    [pack] = await rows(postgres_url, "SELECT status, leads_done FROM context_packs")
    assert (pack["status"], pack["leads_done"]) == ("done", 40)

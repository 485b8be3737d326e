"""Both crons on their schedules in real processes: ``hookgate serve`` and ``hookgate worker``, on
both backends, against fake Unipile, Slack and OpenAI servers on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from gateway.api import create_context_pack
from gateway.events import Lead
from gateway.ingest_store import upsert_leads
from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import rows, start_server, stop_server
from tests.crons_support import START, disconnect, eventually, slack_texts
from tests.fakes import FakeServer


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_both_crons_run_on_their_schedules(
    command: str,
    database_url: str,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    fake_openai: FakeServer,
) -> None:
    options = WorkspaceOptions(slack_channel="#ops", unipile_account_id="acc-down")
    workspace = await create_workspace(db, "Down Inc", options)
    async with db.transaction() as conn:
        await upsert_leads(
            conn, [(workspace.id, Lead(email="a@example.com", first_name="Ada"), START)]
        )
    await create_context_pack(db, workspace.id, START)
    disconnect(fake_unipile, "acc-down")
    env = {
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "UNIPILE_HEALTH_INTERVAL_S": "1",
        "CONTEXT_PACK_INTERVAL_S": "1",
        "ALERTS_SEND_INTERVAL_S": "1",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "UNIPILE_BASE_URL": fake_unipile.url,
        "UNIPILE_API_KEY": "unipile-test-key",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"{fake_openai.url}/v1",
    }
    # In a thread: the fakes answer from this loop while the server starts.
    server = await asyncio.to_thread(start_server, env, command=command)
    try:

        async def both_ran() -> bool:
            runs = await rows(database_url, "SELECT name, last_outcome FROM cron_leases")
            outcomes = {r["name"]: r["last_outcome"] for r in runs}
            return outcomes == {"context_packs": "ok", "unipile_health": "ok"}

        await eventually(both_ran, timeout_s=20, interval_s=0.2)
        await asyncio.sleep(2.5)  # more ticks: still one alert
    finally:
        await asyncio.to_thread(stop_server, server)
    [(channel, text)] = slack_texts(fake_slack)
    assert channel == "#ops" and "Down Inc" in text
    [pack] = await rows(database_url, "SELECT status, leads_done FROM context_packs")
    assert (pack["status"], pack["leads_done"]) == ("done", 1)
    [alert] = await rows(database_url, "SELECT suppressed FROM alerts")
    assert alert["suppressed"] >= 1

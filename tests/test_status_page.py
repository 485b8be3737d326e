"""The status page in a real headless Chromium (Debian's ``chromium``, driven by playwright; never
``playwright install``): a login form and nothing else without the admin token; after signing in,
a disconnected workspace's banner and the repeats its alert suppressed today.  And, over HTTP, an
alert and a notification of unknown outcome, each with the command that re-sends it."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from playwright.async_api import async_playwright

from gateway.app import create_app
from gateway.workspaces import WorkspaceOptions, create_workspace
from scheduler.crons import CronService
from scheduler.lead_notifications import notify_interested_lead
from scheduler.messages import message_of
from scheduler.unipile_health import check_unipile_health
from sql import Database, connect
from tests.browser import ARTIFACTS, launch_chromium
from tests.conftest import fixture_bytes, rows, start_server, stop_server
from tests.crons_support import cron_runtime, cron_settings, disconnect
from tests.fakes import FakeServer, Reply


@pytest.mark.browser
async def test_status_page_in_headless_chromium(
    postgres_url: str, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    db = await connect(postgres_url)
    try:
        options = WorkspaceOptions(slack_channel="#ops-acme", unipile_account_id="acc-acme")
        workspace = await create_workspace(db, "Acme Outbound", options)
        await create_workspace(db, "Globex Sales", WorkspaceOptions(slack_channel="#globex"))
    finally:
        await db.close()
    disconnect(fake_unipile, "acc-acme")
    settings = cron_settings(postgres_url, slack=fake_slack, unipile=fake_unipile)
    async with cron_runtime(settings) as runtime:  # the real clock: "today" is the page's today
        crons = CronService(runtime)
        for _ in range(4):  # one alert, then three repeats it suppresses
            await crons.run_now("unipile_health")
    assert fake_slack.count("POST", "/api/chat.postMessage") == 1

    env = {"DATABASE_URL": postgres_url, "LOG_LEVEL": "WARNING", "HOOKGATE_SCHEDULER": "0"}
    env["HOOKGATE_ADMIN_TOKEN"] = "admin-test-token"
    server = await asyncio.to_thread(start_server, env)
    try:
        async with httpx2.AsyncClient(base_url=server.base_url) as http:
            anonymous = await http.get("/status")
            bearer = await http.get("/status", headers={"Authorization": "Bearer admin-test-token"})
        assert anonymous.status_code == 401
        assert "Acme Outbound" not in anonymous.text and 'name="token"' in anonymous.text
        assert bearer.status_code == 200 and "suppressed 3 repeats today" in bearer.text

        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                await page.goto(f"{server.base_url}/status")
                assert await page.locator("input[name=token]").count() == 1
                assert await page.locator(".banner").count() == 0
                assert "Acme Outbound" not in await page.content()

                await page.fill("input[name=token]", "not-the-token")
                await page.click("button[type=submit]")
                assert await page.locator("[role=alert]").inner_text() == (
                    "That is not the admin token."
                )
                assert await page.locator(".banner").count() == 0

                await page.fill("input[name=token]", "admin-test-token")
                await page.click("button[type=submit]")
                banner = page.locator(f".banner[data-workspace='{workspace.id}']")
                await banner.wait_for(timeout=10_000)
                text = await banner.inner_text()
                assert "LinkedIn account (Unipile) disconnected" in text
                assert "errors/disconnected_account" in text
                assert "suppressed 3 repeats today" in text
                crons_text = await page.locator("#crons").inner_text()
                assert "unipile_health" in crons_text and "context_packs" in crons_text
                alerts_text = await page.locator("#alerts").inner_text()
                assert "unipile_disconnected" in alerts_text
                ARTIFACTS.mkdir(exist_ok=True)
                png = await page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)
                assert len(png) > 10_000

                await page.click("header button[type=submit]")  # sign out
                await page.locator("input[name=token]").wait_for(timeout=10_000)
                assert await page.locator(".banner").count() == 0
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(stop_server, server)


async def test_an_unknown_outcome_is_shown_with_the_command_that_resends_it(
    database_url: str, db: Database, fake_slack: FakeServer, fake_unipile: FakeServer
) -> None:
    options = WorkspaceOptions(slack_channel="#ops-acme", unipile_account_id="acc-acme")
    workspace = await create_workspace(db, "Acme Outbound", options)
    disconnect(fake_unipile, "acc-acme")
    fake_slack.script("POST", "/api/chat.postMessage", Reply(500, body=b"upstream down"))
    settings = cron_settings(database_url, slack=fake_slack, unipile=fake_unipile)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime  # the real clock: "today" is the page's today
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            url = f"/webhooks/emailbison/{workspace.id}?token={workspace.tokens['emailbison']}"
            stored = await http.post(url, content=fixture_bytes("emailbison/lead_replied.json"))
            message_id = stored.json()["message_id"]
            await check_unipile_health(runtime)  # the disconnection alert: unknown
            await notify_interested_lead(  # the lead's notification: unknown too
                runtime,
                runtime.clients,
                await runtime.workspaces.get(workspace.id),
                await message_of(runtime.db, message_id),
                None,
            )
            page = await http.get("/status", headers={"Authorization": "Bearer admin-test-token"})
    [alert] = await rows(database_url, "SELECT id, outcome FROM alerts")
    assert alert["outcome"] == "unknown"
    assert page.status_code == 200
    html = page.text
    assert "Slack alert outcome unknown" in html  # on the workspace's banner
    row = html[html.index(f'data-alert="{alert["id"]}"') :].split("</tr>")[0]
    assert "unknown" in row and "Slack failed: status 500" in row
    assert f"hookgate alerts resend {alert['id']}" in row
    note = html[html.index(f'data-notification="{message_id}"') :].split("</tr>")[0]
    assert f"hookgate alerts resend --message {message_id}" in note
    assert fake_slack.count("POST", "/api/chat.postMessage") == 2  # one each, nothing re-posted

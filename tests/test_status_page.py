"""The status page in a real headless Chromium (Debian's ``chromium``, driven by playwright; never
``playwright install``): a login form and nothing else without the admin token; after signing in,
a disconnected workspace's banner and the repeats its alert suppressed today."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from playwright.async_api import async_playwright

from gateway.workspaces import WorkspaceOptions, create_workspace
from scheduler.crons import CronService
from sql import connect
from tests.conftest import ROOT, start_server, stop_server
from tests.crons_support import cron_runtime, cron_settings, disconnect
from tests.fakes import FakeServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


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
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
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

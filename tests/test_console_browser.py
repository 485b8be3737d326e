"""The operator console in a real headless Chromium (``tests.browser``), against a live server
on PostgreSQL seeded by a real run (``tests.console_support``): sign-in, the lists and their
filters, the detail views, and each action clicked — the rows change, the database agrees, and
the server's log holds one audit line per action."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from gateway.settings import Settings
from tests.browser import ARTIFACTS, launch_chromium
from tests.conftest import LiveServer, rows, start_server, stop_server
from tests.console_support import DEAD_JOB_TYPE, DEATHS, STALE_TOKEN, Seeded, busy_hour, seed
from tests.crons_support import cron_settings
from tests.fakes import FakeServer

pytestmark = pytest.mark.browser
ADMIN_TOKEN = "admin-test-token"


@dataclasses.dataclass
class Console:
    server: LiveServer
    page: Page
    seeded: Seeded
    log: Path
    settings: Settings

    async def open(self, path: str) -> None:
        await self.page.goto(f"{self.server.base_url}{path}")

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)

    def audit(self) -> list[dict[str, Any]]:
        lines = (json.loads(line) for line in self.log.read_text().splitlines() if line)
        return [line for line in lines if line.get("logger") == "hookgate.audit"]


@pytest.fixture
async def console(
    postgres_url: str,
    fake_openai: FakeServer,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    tmp_path: Path,
) -> AsyncIterator[Console]:
    fakes = {"slack": fake_slack, "unipile": fake_unipile, "openai": fake_openai}
    settings = cron_settings(postgres_url, **fakes)
    seeded = await seed(settings, fake_unipile, fake_slack)
    env = {
        "DATABASE_URL": postgres_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_URL": f"{fake_slack.url}/api/",
        "LOG_LEVEL": "WARNING",
        "HOOKGATE_SCHEDULER": "0",
        "HOOKGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        server = await asyncio.to_thread(start_server, env, stderr=stderr)
    try:
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 900})
                page.set_default_timeout(10_000)
                yield Console(server, page, seeded, log, settings)
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(stop_server, server)


async def sign_in(console: Console) -> None:
    await console.open("/status/jobs")
    assert await console.page.locator("#jobs").count() == 0  # the login form, nothing else
    await console.page.fill("input[name=token]", ADMIN_TOKEN)
    await console.page.click("button[type=submit]")
    await console.page.locator("header nav").wait_for()


async def cells(page: Page, table: str, column: int) -> list[str]:
    return [
        text.strip()
        for text in await page.locator(f"{table} tbody tr td:nth-child({column})").all_inner_texts()
    ]


async def test_lists_filters_and_detail_views(console: Console) -> None:
    page, seeded = console.page, console.seeded
    await sign_in(console)

    await console.open("/status/messages")
    workspaces = await cells(page, "#messages", 3)
    assert sorted(set(workspaces)) == ["Acme Outbound", "Globex Sales"]
    assert len(workspaces) == 7  # the copy is deduped into its first message
    assert sorted(await cells(page, "#messages", 9)) == [""] * 6 + ["1"]  # and counted there
    await page.select_option("select[name=workspace]", seeded.globex.id)
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**workspace=*")
    assert await cells(page, "#messages", 3) == ["Globex Sales", "Globex Sales"]
    assert sorted(await cells(page, "#messages", 4)) == ["emailbison email", "instantly email"]
    await page.select_option("select[name=workspace]", "")
    await page.select_option("select[name=direction]", "outbound")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**direction=outbound*")
    assert await cells(page, "#messages", 5) == ["outbound"]
    await console.shot("messages")

    await console.open("/status/messages?provider=emailbison&workspace=" + seeded.acme.id)
    identities = await cells(page, "#messages", 8)
    assert len(identities) == 3 and all("email_bison_reply_id" in i for i in identities)
    await page.locator("#messages tbody tr a").first.click()
    await page.wait_for_url("**/status/messages/*")
    text = await page.locator("main").inner_text()
    assert "email_bison_reply_id = " in text and "EMAIL_INBOUND_POST_PROCESS" in text

    await console.open("/status/jobs")
    await page.select_option("select[name=status]", "dead")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**status=dead*")
    assert await cells(page, "#jobs", 2) == [DEAD_JOB_TYPE]
    await page.click(f"#jobs a[href='/status/jobs/{seeded.dead_job_id}']")
    await page.wait_for_url(f"**/status/jobs/{seeded.dead_job_id}")
    error = await page.locator("#last-error").inner_text()
    assert error == f"no handler is registered for job type {DEAD_JOB_TYPE}"
    assert "1 of 1" in await page.locator("#job").inner_text()
    await console.shot("job")

    await console.open(f"/status/quarantine?status=pending&workspace={seeded.acme.id}")
    assert await cells(page, "#deliveries", 1) == [str(seeded.unreadable[0])]
    await page.click(f"#deliveries a[href='/status/quarantine/{seeded.unreadable[0]}']")
    await page.wait_for_url(f"**/status/quarantine/{seeded.unreadable[0]}")
    assert "not-a-number" in await page.locator("#body").inner_text()
    assert "no lead email" in await page.locator("#parser-error").inner_text()
    await console.shot("delivery")

    await console.open("/status/workspaces")
    acme = await page.locator(f"tr[data-workspace='{seeded.acme.id}']").inner_text()
    assert "disconnected" in acme and "unipile" in acme

    await console.open("/status/jobs?status=lost")
    assert "status must be one of pending, running, succeeded, dead" in await page.content()


async def test_each_action_clicked_changes_its_rows_and_is_audited(console: Console) -> None:
    page, seeded, url = console.page, console.seeded, console.settings.database_url
    await sign_in(console)

    await console.open("/status/jobs?status=dead")
    await page.click(f"tr[data-job='{seeded.dead_job_id}'] button")
    notice = page.locator("[role=status]")
    assert await notice.inner_text() == f"Job {seeded.dead_job_id} is pending again, due now."
    assert await page.locator("#jobs tbody tr[data-job]").count() == 0  # no dead job left
    query = "SELECT status, attempts FROM background_jobs WHERE id = $1"
    [job] = await rows(url, query, seeded.dead_job_id)
    assert job == {"status": "pending", "attempts": 0}

    await console.open("/status/quarantine?status=pending")
    first, second = seeded.unreadable
    await page.click(f"tr[data-delivery='{first}'] button:text('Replay')")
    assert "still unreadable" in await notice.inner_text()
    row = page.locator(f"tr[data-delivery='{first}']")
    assert await row.get_attribute("data-status") == "pending"
    await page.click(f"tr[data-delivery='{seeded.readable}'] button:text('Replay')")
    assert "replayed: stored message" in await notice.inner_text()
    assert await page.locator(f"tr[data-delivery='{seeded.readable}']").count() == 0
    await page.click(f"tr[data-delivery='{second}'] button:text('Discard')")
    assert await notice.inner_text() == f"Delivery {second} discarded."
    assert await page.locator(f"tr[data-delivery='{second}']").count() == 0
    stored = await rows(url, "SELECT id, status FROM webhook_quarantine")
    statuses = {row["id"]: row["status"] for row in stored}
    assert statuses == {first: "pending", second: "discarded", seeded.readable: "replayed"}
    await console.open("/status/quarantine?status=replayed")
    replayed = page.locator(f"tr[data-delivery='{seeded.readable}']")
    assert "replayed" in await replayed.inner_text()

    await console.open("/status/alerts?outcome=unknown")
    await page.click(f"tr[data-alert='{seeded.unknown_alert}'] button")
    assert await notice.inner_text() == f"alert {seeded.unknown_alert} re-sent: Slack posted it"
    assert await page.locator(f"tr[data-alert='{seeded.unknown_alert}']").count() == 0
    message = seeded.unknown_notification
    await page.click(f"tr[data-notification='{message}'] button")
    assert await notice.inner_text() == f"message {message}'s notification re-sent: Slack posted it"
    assert await page.locator("#notifications tr[data-notification]").count() == 0
    [alert] = await rows(url, "SELECT outcome FROM alerts WHERE id = $1", seeded.unknown_alert)
    [note] = await rows(url, "SELECT notify_outcome FROM messages WHERE id = $1", message)
    assert alert == {"outcome": "sent"} and note == {"notify_outcome": "sent"}
    await console.open("/status/alerts")
    await console.shot("alerts")

    await console.open("/status/workspaces")
    await page.click(f"tr[data-workspace='{seeded.acme.id}'] button")
    assert "is pending: the next context_packs run builds it" in await notice.inner_text()
    assert "pending" in await page.locator("#packs tbody tr").first.inner_text()
    await page.click(f"tr[data-workspace='{seeded.acme.id}'] button")
    assert "is already pending: one at a time" in await notice.inner_text()
    assert await page.locator("#packs tbody tr[data-pack]").count() == 1
    await console.shot("workspaces")

    actions = [(a["action"], a["target_id"], a["outcome"]) for a in console.audit()]
    assert actions == [
        ("job.retry", seeded.dead_job_id, "retried"),
        ("quarantine.replay", first, "still unreadable"),
        ("quarantine.replay", seeded.readable, "replayed"),
        ("quarantine.discard", second, "discarded"),
        ("alert.resend", seeded.unknown_alert, "sent"),
        ("notification.resend", message, "sent"),
        ("pack.start", seeded.acme.id, "created pack 1"),
        ("pack.start", seeded.acme.id, "already open: pack 1"),
    ]
    assert {a["actor"] for a in console.audit()} == {a["actor"] for a in console.audit()[:1]}
    assert console.audit()[0]["actor"].startswith("session:")


CHARTS = (
    "deliveries",
    "ack-latency",
    "queue-depth",
    "dead-jobs",
    "ai-calls",
    "ai-tokens",
    "ai-latency",
    "alerts",
)


async def legend(page: Page, key: str) -> dict[str, str]:
    """A chart's legend: each series' figure by name."""
    found = {}
    for text in await page.locator(f"#chart-{key} .figures .key").all_inner_texts():
        figure, _, name = text.strip().rpartition(" ")
        found[name] = figure
    return found


async def test_the_overview_charts_a_seeded_run(console: Console, fake_openai: FakeServer) -> None:
    page = console.page
    started = time.monotonic()
    await busy_hour(console.settings, console.seeded, fake_openai, minutes=60)
    print(f"busy hour seeded in {time.monotonic() - started:.1f} s")
    await sign_in(console)
    await console.open("/status?range=1h")
    for key in CHARTS:
        chart = page.locator(f"#chart-{key}")
        assert await chart.locator("svg .series").count() > 0, key
        assert await chart.locator("svg .no_data").count() == 0, key
    figures = {key: await page.locator(f"#chart-{key} .figures").inner_text() for key in CHARTS}
    assert figures["dead-jobs"] == f"{1 + len(DEATHS)} {DEAD_JOB_TYPE}"
    assert "EMAIL_INBOUND_POST_PROCESS" in figures["ai-calls"]
    assert "2 sent" in figures["alerts"] and "1 unknown" in figures["alerts"]
    hour = await legend(page, "deliveries")
    assert set(hour) == {"stored", "deduped", "ignored", "quarantined", "rejected"}
    assert int(hour["rejected"]) == sum(1 + m % 3 for m in STALE_TOKEN)
    assert int(hour["quarantined"]) == 15 + 2  # the burst of unreadable payloads, the seed's two
    latency = await legend(page, "ack-latency")
    assert set(latency) == {"p50", "p99"} and all(v.startswith("peak ") for v in latency.values())
    note = await page.locator("#chart-ack-latency .note").inner_text()
    assert note.startswith("Over the range: p50 ") and "Estimated within latency buckets" in note
    stored_bars = page.locator("#chart-deliveries svg .series").first.locator("rect")
    assert await stored_bars.count() == 60  # a bar a minute
    await console.shot("overview")
    await page.set_viewport_size({"width": 1440, "height": 1712})
    await page.screenshot(path=str(ARTIFACTS / "console.png"))  # the README's (docs/console.png)

    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.click(".toolbar .ranges a:text('24h')")  # the round hours earlier comes in
    await page.wait_for_url("**range=24h")
    day = await legend(page, "deliveries")
    assert int(day["stored"]) > int(hour["stored"]) and day["rejected"] == hour["rejected"]
    assert "per 15 minutes" in await page.locator("#chart-deliveries h2").inner_text()
    assert await stored_bars.count() == 96  # a bar a quarter hour
    await console.shot("overview-24h")
    await page.click("#chart-deliveries .providers a:text('instantly')")
    await page.wait_for_url("**provider=instantly")
    # The seed's one Instantly reply, and the sender with the old token.
    assert await legend(page, "deliveries") == {"stored": "1", "rejected": hour["rejected"]}
    assert await page.locator("#deliveries tr[data-provider]").count() == 4

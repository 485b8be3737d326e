"""Opening the clients for a process (clients/__init__.py), and the boundary that keeps every
outbound HTTP call inside clients/."""

from __future__ import annotations

import logging
import re

import pytest

from clients import open_clients
from gateway.settings import Settings
from sql import Database
from tests.conftest import ROOT, AppClient, make_settings
from tests.fakes import FakeServer

# Libraries that open HTTP connections.  Only clients/ may import them.
HTTP_LIBRARIES = re.compile(
    r"^\s*(?:import|from)\s+(aiohttp|httpx2?|openai|slack_sdk|requests|urllib\.request|http\.client)\b",
    re.MULTILINE,
)


def test_no_module_outside_clients_imports_an_http_library() -> None:
    modules = [
        p for package in ("gateway", "scheduler", "sql") for p in (ROOT / package).rglob("*.py")
    ]
    assert len(modules) > 10
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(1)}"
        for path in sorted(modules)
        for match in HTTP_LIBRARIES.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert HTTP_LIBRARIES.search((ROOT / "clients" / "http.py").read_text(encoding="utf-8"))


async def test_open_clients_shares_one_session_and_closes_it(
    settings: Settings,
    db: Database,
    fake_slack: FakeServer,
    fake_unipile: FakeServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    configured = make_settings(
        settings.database_url,
        SLACK_BOT_TOKEN="xoxb-test",
        SLACK_API_URL=f"{fake_slack.url}/api/",
        UNIPILE_BASE_URL=fake_unipile.url,
        UNIPILE_API_KEY="unipile-key",
    )
    caplog.set_level(logging.INFO, logger="hookgate.clients")
    async with open_clients(configured, db) as clients:
        session = clients.http.session
        assert (await clients.slack.post("#replies", "hello")).sent
        assert (await clients.unipile.check_account("acc-1")).connected
        assert not clients.ai.enabled
        clients.report_off()
    assert session.closed
    off = [
        r.__dict__["service"]
        for r in caplog.records
        if r.__dict__.get("event") == "outbound_disabled"
    ]
    assert off == ["ai"]


async def test_the_app_puts_the_clients_on_its_runtime(client: AppClient) -> None:
    runtime = client.app.state.runtime
    assert runtime.clients is not None
    assert not runtime.clients.slack.enabled  # no SLACK_BOT_TOKEN in the test settings


def test_outbound_timeouts_are_clamped() -> None:
    assert Settings.from_env({}).emailbison_timeout_s == 15.0
    assert Settings.from_env({"EMAILBISON_TIMEOUT_MS": "100"}).emailbison_timeout_s == 1.0
    assert Settings.from_env({"EMAILBISON_TIMEOUT_MS": "900000"}).emailbison_timeout_s == 60.0
    assert Settings.from_env({"UNIPILE_TIMEOUT_MS": "2500"}).unipile_timeout_s == 2.5
    assert Settings.from_env({"SLACK_TIMEOUT_MS": "0"}).slack_timeout_s == 1.0

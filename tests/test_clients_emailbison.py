"""The EmailBison client (clients/emailbison.py) against a fake EmailBison on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from clients.emailbison import EmailBisonClient
from clients.http import HttpPolicy, RetryPolicy
from tests.fakes import FakeServer, Reply, closed_port_url


@pytest.fixture
async def emailbison() -> AsyncIterator[EmailBisonClient]:
    async with aiohttp.ClientSession() as session:
        http = HttpPolicy(session, RetryPolicy(base_delay_s=0.01, max_delay_s=0.05))
        yield EmailBisonClient(http, timeout_s=0.4)


def workspace_for(url: str) -> dict[str, Any]:
    """A ``workspaces`` row as the database port returns it (the columns this client reads)."""
    return {
        "id": "ws-1",
        "emailbison_api_key": "eb-workspace-key",
        "emailbison_base_url": f"{url}/",
    }


async def test_fetch_lead_sends_the_workspace_key_and_reads_data(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    result = await emailbison.fetch_lead(workspace_for(fake_emailbison.url), "jordan@example.com")
    assert result.ok
    assert result.data is not None and result.data["first_name"] == "Jordan"
    (seen,) = fake_emailbison.requests("GET")
    assert seen.path == "/api/leads/jordan@example.com"
    assert seen.headers["Authorization"] == "Bearer eb-workspace-key"


async def test_fetch_lead_emails_gathers_sent_emails_and_replies(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    fake_emailbison.script(
        "GET", "/api/leads/7/sent-emails", Reply(json={"data": [{"id": 1}, {"id": 2}]})
    )
    fake_emailbison.script("GET", "/api/leads/7/replies", Reply(json={"data": [{"id": 9}]}))
    result = await emailbison.fetch_lead_emails(workspace_for(fake_emailbison.url), "7")
    assert result.ok
    assert result.data == {"sent_emails": [{"id": 1}, {"id": 2}], "replies": [{"id": 9}]}


async def test_a_slow_emailbison_degrades_to_a_timeout_result(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    fake_emailbison.script("GET", "/api/leads/*", Reply(json={"data": {}}, delay_s=3))
    result = await emailbison.fetch_lead(workspace_for(fake_emailbison.url), "jordan@example.com")
    assert (result.ok, result.data, result.error_class) == (False, None, "timeout")
    assert fake_emailbison.count() == 3  # a GET: retried up to the cap


async def test_one_failed_half_fails_fetch_lead_emails(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    fake_emailbison.script("GET", "/api/leads/7/replies", Reply(404, json={"error": "not_found"}))
    result = await emailbison.fetch_lead_emails(workspace_for(fake_emailbison.url), "7")
    assert (result.ok, result.error_class, result.error) == (
        False,
        "http_status",
        "status 404 not_found",
    )


async def test_send_reply_posts_once_and_returns_the_reply_id(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    result = await emailbison.send_reply(
        workspace_for(fake_emailbison.url),
        "555",
        "Tuesday at 10 works.",
        sender_email_id=12,
        to_email="jordan@example.com",
    )
    assert (result.ok, result.provider_message_id) == (True, "9001")
    (sent,) = fake_emailbison.requests("POST", "/api/replies/555/reply")
    assert sent.json == {
        "message": "Tuesday at 10 works.",
        "content_type": "text",
        "sender_email_id": 12,
        "to_emails": [{"name": None, "email_address": "jordan@example.com"}],
    }


async def test_send_reply_is_never_retried(
    emailbison: EmailBisonClient, fake_emailbison: FakeServer
) -> None:
    fake_emailbison.script("POST", "/api/replies/*/reply", Reply(json={}, delay_s=3))
    result = await emailbison.send_reply(workspace_for(fake_emailbison.url), "555", "hi")
    assert (result.ok, result.error_class) == (False, "timeout")
    assert fake_emailbison.count("POST") == 1


async def test_a_refused_connection_is_a_connection_result(
    emailbison: EmailBisonClient,
) -> None:
    result = await emailbison.fetch_lead(workspace_for(closed_port_url()), "a@example.com")
    assert (result.ok, result.error_class) == (False, "connection")


async def test_a_workspace_without_credentials_is_not_configured(
    emailbison: EmailBisonClient,
) -> None:
    bare = {"id": "ws-2", "emailbison_api_key": None, "emailbison_base_url": None}
    fetched = await emailbison.fetch_lead(bare, "a@example.com")
    sent = await emailbison.send_reply(bare, "1", "hi")
    assert (fetched.ok, fetched.error_class) == (False, "not_configured")
    assert (sent.ok, sent.error_class) == (False, "not_configured")

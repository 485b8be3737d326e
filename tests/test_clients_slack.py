"""The Slack client (clients/slack.py): slack-sdk's AsyncWebClient against a fake Slack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from clients.context import time_budget
from clients.slack import SlackClient
from tests.fakes import FakeServer, Reply, closed_port_url

POST_MESSAGE = "/api/chat.postMessage"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as shared:
        yield shared


def slack_at(url: str, session: aiohttp.ClientSession, token: str = "xoxb-test") -> SlackClient:
    return SlackClient(token=token, api_url=f"{url}/api/", session=session, timeout_s=5)


async def test_post_delivers_the_message(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    result = await slack_at(fake_slack.url, session).post("#replies", "Jordan is interested")
    assert result.ok
    (sent,) = fake_slack.requests("POST", POST_MESSAGE)
    assert sent.headers["Authorization"] == "Bearer xoxb-test"
    assert sent.json == {"channel": "#replies", "text": "Jordan is interested"}


async def test_rate_limited_then_ok_delivers_exactly_one_message(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script(
        "POST",
        POST_MESSAGE,
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"}),
        Reply(200, json={"ok": True, "channel": "C1", "ts": "1.2"}),
    )
    result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert result.ok
    first, second = fake_slack.requests("POST", POST_MESSAGE)
    assert second.at - first.at >= 0.95  # Retry-After was honoured
    assert first.json == second.json  # the same message, accepted once (the 429 posted nothing)


async def test_rate_limited_beyond_the_retries_is_classified(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script(
        "POST",
        POST_MESSAGE,
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
    )
    result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert (result.ok, result.error_class) == (False, "rate_limited")
    assert fake_slack.count() == 3  # the first try and RATE_LIMIT_RETRIES more


async def test_an_api_error_is_classified_and_not_retried(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": False, "error": "channel_not_found"}))
    result = await slack_at(fake_slack.url, session).post("#gone", "hello")
    assert (result.ok, result.error_class) == (False, "api_error")
    assert result.error is not None and "channel_not_found" in result.error
    assert fake_slack.count() == 1


async def test_connection_refused_is_unreachable_not_unknown(
    session: aiohttp.ClientSession,
) -> None:
    result = await slack_at(closed_port_url(), session).post("#replies", "hello")
    assert (result.ok, result.error_class) == (False, "unreachable")


async def test_a_slow_slack_is_a_timeout_within_the_budget(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=5))
    with time_budget(0.3):
        result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert (result.ok, result.error_class) == (False, "timeout")
    assert fake_slack.count() == 1


async def test_no_token_turns_slack_off(session: aiohttp.ClientSession) -> None:
    slack = slack_at(closed_port_url(), session, token="")
    assert not slack.enabled
    result = await slack.post("#replies", "hello")
    assert (result.ok, result.error_class) == (False, "disabled")

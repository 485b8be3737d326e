"""The Slack client (clients/slack.py): slack-sdk's AsyncWebClient against a fake Slack.  Every
call ends in one verdict: sent, not_sent (Slack certainly posted nothing) or unknown (the request
went out and nobody knows); an unknown one is never retried."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from clients.context import time_budget
from clients.slack import NOT_SENT, SENT, UNKNOWN, SlackClient
from tests.fakes import FakeServer, Reply, closed_port_url

POST_MESSAGE = "/api/chat.postMessage"
TIMEOUT_S = 1.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # As open_clients builds it: the session's timeout is Slack's per-attempt timeout.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as shared:
        yield shared


def slack_at(url: str, session: aiohttp.ClientSession, token: str = "xoxb-test") -> SlackClient:
    return SlackClient(token=token, api_url=f"{url}/api/", session=session, timeout_s=TIMEOUT_S)


async def test_post_delivers_the_message(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    result = await slack_at(fake_slack.url, session).post("#replies", "Jordan is interested")
    assert (result.verdict, result.sent) == (SENT, True)
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
    assert result.sent
    first, second = fake_slack.requests("POST", POST_MESSAGE)
    assert second.at - first.at >= 0.95  # Retry-After was honoured
    assert first.json == second.json  # the same message, accepted once (the 429 posted nothing)


async def test_rate_limited_beyond_the_retries_is_not_sent(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script(
        "POST",
        POST_MESSAGE,
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "0"}),
    )
    result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert result.verdict == NOT_SENT
    assert result.error is not None and "rate limited" in result.error
    assert fake_slack.count() == 3  # the first try and RATE_LIMIT_RETRIES more


async def test_a_retry_after_longer_than_the_budget_is_not_sent_without_waiting(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    """The deadline falls inside the wait, when nothing is in flight: certainly not posted, and
    not an unknown outcome that an operator would have to look at."""
    fake_slack.script(
        "POST",
        POST_MESSAGE,
        Reply(429, json={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "30"}),
    )
    started = time.monotonic()
    result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert result.verdict == NOT_SENT
    assert fake_slack.count() == 1
    assert time.monotonic() - started < 3 * TIMEOUT_S  # it did not sleep 30 s


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found", "not_in_channel"])
async def test_a_refusal_is_not_sent_and_not_retried(
    fake_slack: FakeServer, session: aiohttp.ClientSession, error: str
) -> None:
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": False, "error": error}))
    result = await slack_at(fake_slack.url, session).post("#gone", "hello")
    assert result.verdict == NOT_SENT
    assert result.error is not None and error in result.error
    assert fake_slack.count() == 1


async def test_connection_refused_is_not_sent(session: aiohttp.ClientSession) -> None:
    result = await slack_at(closed_port_url(), session).post("#replies", "hello")
    assert result.verdict == NOT_SENT
    assert result.error is not None and "never connected" in result.error


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(json={"ok": True}, delay_s=TIMEOUT_S + 1), id="answer-after-timeout"),
        pytest.param(Reply(500, json={"ok": False, "error": "internal_error"}), id="500-json"),
        pytest.param(Reply(503, body=b"upstream down"), id="503-text"),
        pytest.param(Reply(json={"ok": False, "error": "internal_error"}), id="internal_error"),
        pytest.param(Reply(json={"ok": False, "error": "fatal_error"}), id="fatal_error"),
        pytest.param(Reply(drop=True), id="dropped-mid-request"),
        pytest.param(Reply(drop=True, delay_s=0.2), id="dropped-after-a-while"),
    ],
)
async def test_an_outcome_nobody_knows_is_unknown_and_posted_once(
    fake_slack: FakeServer, session: aiohttp.ClientSession, reply: Reply
) -> None:
    fake_slack.script("POST", POST_MESSAGE, reply)
    result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert result.verdict == UNKNOWN and result.error
    assert fake_slack.count() == 1  # never retried: the first may have posted


async def test_a_slow_slack_is_unknown_within_the_budget(
    fake_slack: FakeServer, session: aiohttp.ClientSession
) -> None:
    fake_slack.script("POST", POST_MESSAGE, Reply(json={"ok": True}, delay_s=5))
    started = time.monotonic()
    with time_budget(0.3):
        result = await slack_at(fake_slack.url, session).post("#replies", "hello")
    assert result.verdict == UNKNOWN
    assert time.monotonic() - started < TIMEOUT_S  # the budget, not the attempt's timeout
    assert fake_slack.count() == 1


async def test_no_token_turns_slack_off(session: aiohttp.ClientSession) -> None:
    slack = slack_at(closed_port_url(), session, token="")
    assert not slack.enabled
    result = await slack.post("#replies", "hello")
    assert result.verdict == NOT_SENT
    assert result.error is not None and "SLACK_BOT_TOKEN" in result.error

"""The HTTP policy (clients/http.py) against fake servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from clients.context import time_budget
from clients.http import (
    HttpPolicy,
    OutboundConnectionError,
    OutboundStatusError,
    OutboundTimeout,
    RetryPolicy,
    retry_after_s,
)
from tests.fakes import FakeServer, Reply, closed_port_url

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, max_total_s=10)


@pytest.fixture
async def policy() -> AsyncIterator[HttpPolicy]:
    async with aiohttp.ClientSession() as session:
        yield HttpPolicy(session, FAST)


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "outbound_failure"]


async def test_slow_get_is_a_timeout_and_is_retried(
    policy: HttpPolicy, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script("GET", "/slow", Reply(json={}, delay_s=3))
    started = time.monotonic()
    with pytest.raises(OutboundTimeout) as caught:
        await policy.request("GET", f"{fake_server.url}/slow", service="t", timeout_s=0.2)
    assert time.monotonic() - started < 2.5
    assert fake_server.count("GET", "/slow") == 3
    assert caught.value.attempts == 3
    logged = failures(caplog)
    assert [r.__dict__["error_class"] for r in logged] == ["timeout"] * 3
    assert [r.__dict__["will_retry"] for r in logged] == [True, True, False]


async def test_slow_post_is_a_timeout_and_is_never_retried(
    policy: HttpPolicy, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script("POST", "/send", Reply(json={}, delay_s=3))
    with pytest.raises(OutboundTimeout):
        await policy.request(
            "POST", f"{fake_server.url}/send", service="t", timeout_s=0.2, json_body={"a": 1}
        )
    await asyncio.sleep(0.3)  # a retry, if one were made, would have arrived by now
    assert fake_server.count("POST", "/send") == 1
    assert len(failures(caplog)) == 1


async def test_post_503_is_not_retried(policy: HttpPolicy, fake_server: FakeServer) -> None:
    fake_server.script("POST", "/send", Reply(503), Reply(200))
    with pytest.raises(OutboundStatusError) as caught:
        await policy.request("POST", f"{fake_server.url}/send", service="t", timeout_s=2)
    assert caught.value.status == 503
    assert fake_server.count() == 1


async def test_429_retry_after_is_honoured(policy: HttpPolicy, fake_server: FakeServer) -> None:
    fake_server.script(
        "GET",
        "/limited",
        Reply(429, json={"error": "rate_limited"}, headers={"Retry-After": "1"}),
        Reply(200, json={"ok": True}),
    )
    response = await policy.request("GET", f"{fake_server.url}/limited", service="t", timeout_s=2)
    assert response.status == 200
    assert response.json() == {"ok": True}
    first, second = fake_server.requests("GET", "/limited")
    assert second.at - first.at >= 0.95  # the backoff alone would wait at most 0.05 s


async def test_retry_after_beyond_the_total_cap_fails_at_once(
    fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script("GET", "/limited", Reply(429, headers={"Retry-After": "120"}))
    async with aiohttp.ClientSession() as session:
        policy = HttpPolicy(session, RetryPolicy(max_attempts=3, max_total_s=5))
        started = time.monotonic()
        with pytest.raises(OutboundStatusError) as caught:
            await policy.request("GET", f"{fake_server.url}/limited", service="t", timeout_s=2)
    assert caught.value.status == 429
    assert time.monotonic() - started < 2
    assert fake_server.count() == 1
    assert failures(caplog)[0].__dict__["will_retry"] is False


async def test_503_then_200_get_succeeds_on_retry(
    policy: HttpPolicy, fake_server: FakeServer
) -> None:
    fake_server.script("GET", "/flaky", Reply(503), Reply(200, json={"data": [1, 2]}))
    response = await policy.request("GET", f"{fake_server.url}/flaky", service="t", timeout_s=2)
    assert response.json() == {"data": [1, 2]}
    assert fake_server.count("GET", "/flaky") == 2


async def test_400_is_not_retried_and_carries_the_error_type(
    policy: HttpPolicy, fake_server: FakeServer
) -> None:
    fake_server.script(
        "GET", "/bad", Reply(400, json={"type": "errors/invalid_parameters", "status": 400})
    )
    with pytest.raises(OutboundStatusError) as caught:
        await policy.request("GET", f"{fake_server.url}/bad", service="t", timeout_s=2)
    assert caught.value.status == 400
    assert caught.value.error_type == "errors/invalid_parameters"
    assert caught.value.error_class == "http_status"
    assert fake_server.count() == 1


async def test_caller_cancelling_mid_request_propagates_and_is_not_retried(
    policy: HttpPolicy, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script("GET", "/slow", Reply(json={}, delay_s=5))
    task = asyncio.create_task(
        policy.request("GET", f"{fake_server.url}/slow", service="t", timeout_s=10)
    )
    await fake_server.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert fake_server.count() == 1
    assert failures(caplog) == []


async def test_connection_refused_is_a_connection_error(
    policy: HttpPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(OutboundConnectionError) as caught:
        await policy.request("GET", f"{closed_port_url()}/x", service="t", timeout_s=2)
    assert caught.value.error_class == "connection"
    assert caught.value.attempts == 3
    assert {r.__dict__["error_class"] for r in failures(caplog)} == {"connection"}


async def test_time_budget_cuts_the_request_short(
    policy: HttpPolicy, fake_server: FakeServer
) -> None:
    fake_server.script("GET", "/slow", Reply(json={}, delay_s=3))
    started = time.monotonic()
    with time_budget(0.4), pytest.raises(OutboundTimeout):
        await policy.request("GET", f"{fake_server.url}/slow", service="t", timeout_s=10)
    assert time.monotonic() - started < 1.5


async def test_failure_log_carries_no_secrets(
    policy: HttpPolicy, fake_server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.script("GET", "/lead", Reply(404, json={"error": "not_found"}))
    with pytest.raises(OutboundStatusError):
        await policy.request(
            "GET",
            f"{fake_server.url}/lead?api_key=sk-query-secret",
            service="emailbison",
            timeout_s=2,
            headers={"Authorization": "Bearer sk-header-secret"},
        )
    assert fake_server.requests()[0].headers["Authorization"] == "Bearer sk-header-secret"
    (record,) = failures(caplog)
    assert record.__dict__["url"] == f"{fake_server.url}/lead"
    assert record.__dict__["error_type"] == "not_found"
    rendered = repr(record.__dict__)
    assert "sk-query-secret" not in rendered
    assert "sk-header-secret" not in rendered


async def test_calls_through_one_policy_run_concurrently(
    policy: HttpPolicy, fake_server: FakeServer
) -> None:
    fake_server.script("GET", "/lead/*", Reply(json={}, delay_s=0.3))
    responses = await asyncio.gather(
        *(
            policy.request("GET", f"{fake_server.url}/lead/{n}", service="t", timeout_s=5)
            for n in range(5)
        )
    )
    assert [r.status for r in responses] == [200] * 5
    assert fake_server.max_in_flight == 5
    assert fake_server.in_flight == 0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Sun, 22 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after_s("Sun, 22 Nov 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None

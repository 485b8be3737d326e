"""Slack: post a message to a workspace's channel through slack-sdk's ``AsyncWebClient``.

Every post ends in one of three verdicts (``SlackResult.verdict``), and callers act on nothing
else:

- ``sent``: Slack answered ``ok``;
- ``not_sent``: Slack certainly did not post it, so posting again cannot post it twice: a 429
  (after ``RATE_LIMIT_RETRIES`` waits of its ``Retry-After``), an ``ok: false`` refusal such as
  ``invalid_auth`` or ``channel_not_found``, a connection that was never made (refused, DNS, a
  connect timeout), a request slack-sdk would not build, or Slack off (``SLACK_BOT_TOKEN`` unset);
- ``unknown``: the request went out and nobody knows whether Slack posted it: a timeout, a
  connection dropped mid-request, an HTTP 5xx, ``internal_error`` or ``fatal_error``.  A caller
  never repeats such a post by itself; it records the verdict for an operator.

The client shares the process's aiohttp session (so the session's default timeout,
``SLACK_TIMEOUT_MS``, bounds each attempt: slack-sdk uses the session's timeout, not its own)
and talks to ``SLACK_API_URL``.  slack-sdk's retry handlers are left out: the rate-limit retry
is done here, so that a deadline reached while waiting out a ``Retry-After`` (nothing in flight:
``not_sent``) is never confused with one reached mid-request (``unknown``), and the default
connection-error handler would re-send after a reset, when Slack may already have posted.  The
whole call, waits included, is bounded by ``SLACK_POST_ATTEMPTS * SLACK_TIMEOUT_MS`` and by the
caller's ``time_budget``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Literal

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from clients.context import remaining_budget
from gateway.settings import SLACK_POST_ATTEMPTS

log = logging.getLogger("hookgate.clients.slack")

RATE_LIMIT_RETRIES = SLACK_POST_ATTEMPTS - 1
# ``ok: false`` errors after which Slack may have done part of the work (Slack's own docs).
UNKNOWN_ERRORS = frozenset({"internal_error", "fatal_error"})

Verdict = Literal["sent", "not_sent", "unknown"]
SENT: Verdict = "sent"
NOT_SENT: Verdict = "not_sent"
UNKNOWN: Verdict = "unknown"


@dataclasses.dataclass(frozen=True, slots=True)
class SlackResult:
    verdict: Verdict
    error: str | None = None  # what Slack or the connection said, for the log and the alert row

    @property
    def sent(self) -> bool:
        return self.verdict == SENT


@dataclasses.dataclass(frozen=True, slots=True)
class _RateLimited:
    retry_after_s: float
    result: SlackResult


class SlackClient:
    def __init__(
        self,
        *,
        token: str,
        api_url: str,
        session: aiohttp.ClientSession,
        timeout_s: float,
    ) -> None:
        self._timeout_s = timeout_s
        self._web: AsyncWebClient | None = None
        if token:
            self._web = AsyncWebClient(
                token=token, base_url=api_url, session=session, retry_handlers=[]
            )

    @property
    def enabled(self) -> bool:
        return self._web is not None

    async def post(self, channel: str, text: str) -> SlackResult:
        """``chat.postMessage`` to ``channel``: a verdict, never an exception (except the
        caller's own cancellation)."""
        if self._web is None:
            return SlackResult(NOT_SENT, "Slack is off: SLACK_BOT_TOKEN is unset")
        total_s = self._timeout_s * SLACK_POST_ATTEMPTS
        budget = remaining_budget()
        if budget is not None:
            total_s = min(total_s, budget)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(total_s, 0.0)
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            outcome = await self._attempt(self._web, channel, text, deadline)
            if not isinstance(outcome, _RateLimited):
                result = outcome
                break
            result = outcome.result
            wait_s = outcome.retry_after_s
            if attempt == RATE_LIMIT_RETRIES or loop.time() + wait_s >= deadline:
                break  # no time left to wait it out: the 429 stands, and it posted nothing
            await asyncio.sleep(wait_s)
        if not result.sent:
            log.warning(
                "slack_failure",
                extra={
                    "event": "outbound_failure",
                    "service": "slack",
                    "method": "POST",
                    "url": "chat.postMessage",
                    "verdict": result.verdict,
                    "error": result.error,
                },
            )
        return result

    @staticmethod
    async def _attempt(
        web: AsyncWebClient, channel: str, text: str, deadline: float
    ) -> SlackResult | _RateLimited:
        """One request, classified."""
        try:
            async with asyncio.timeout_at(deadline):
                await web.chat_postMessage(channel=channel, text=text)
        except SlackApiError as exc:
            return _refusal(exc)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection was ever made: Slack certainly did not post it.
            return SlackResult(NOT_SENT, f"never connected: {type(exc).__name__}: {exc}")
        except TimeoutError:
            return SlackResult(UNKNOWN, "timed out: the request went out and Slack did not answer")
        except aiohttp.ClientError as exc:
            # The connection broke after the request went out: Slack may have posted it.
            return SlackResult(UNKNOWN, f"connection dropped: {type(exc).__name__}: {exc}")
        except SlackClientError as exc:
            # slack-sdk refused to build or send the request: nothing went out.
            return SlackResult(NOT_SENT, f"{type(exc).__name__}: {exc}")
        return SlackResult(SENT)


def _refusal(exc: SlackApiError) -> SlackResult | _RateLimited:
    """What an answer other than ``ok`` means."""
    response = exc.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or "")
    said = f"status {status} {error}".strip()
    if status == 429:
        retry_after = response.headers.get("Retry-After", "1")
        try:
            wait_s = max(float(retry_after), 0.0)
        except ValueError:
            wait_s = 1.0
        return _RateLimited(wait_s, SlackResult(NOT_SENT, f"rate limited: {said}"))
    if status >= 500 or error in UNKNOWN_ERRORS:
        return SlackResult(UNKNOWN, f"Slack failed: {said}")
    if status == 200 and not error:
        return SlackResult(UNKNOWN, "answered 200 without a readable verdict")
    return SlackResult(NOT_SENT, f"refused: {said}")

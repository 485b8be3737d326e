"""Slack: post a message to a workspace's channel through slack-sdk's ``AsyncWebClient``.

The client shares the process's aiohttp session (so the session's default timeout,
``SLACK_TIMEOUT_MS``, bounds each attempt: slack-sdk uses the session's timeout, not its own)
and talks to ``SLACK_API_URL``.  Its only retry handler is ``AsyncRateLimitErrorRetryHandler``:
a 429 means Slack did not post the message, so waiting out ``Retry-After`` and sending again
cannot post it twice.  slack-sdk's default connection-error handler is left out on purpose: it
retries a reset connection, after which ``chat.postMessage`` may already have posted.  The
whole call, waits included, is also bounded by ``3 * SLACK_TIMEOUT_MS`` and by the caller's
``time_budget``.

An unset ``SLACK_BOT_TOKEN`` turns Slack off: ``post`` answers ``error_class="disabled"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from clients.context import remaining_budget

log = logging.getLogger("hookgate.clients.slack")

RATE_LIMIT_RETRIES = 2


@dataclasses.dataclass(frozen=True, slots=True)
class SlackResult:
    ok: bool
    # disabled, rate_limited, api_error, unreachable (never connected: certainly not posted),
    # connection (broke mid-request) or timeout (both: posted or not, nobody knows)
    error_class: str | None = None
    error: str | None = None


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
                token=token,
                base_url=api_url,
                session=session,
                retry_handlers=[
                    AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)
                ],
            )

    @property
    def enabled(self) -> bool:
        return self._web is not None

    async def post(self, channel: str, text: str) -> SlackResult:
        """``chat.postMessage`` to ``channel``; a result, never an exception (except the
        caller's own cancellation)."""
        if self._web is None:
            return SlackResult(False, "disabled", "SLACK_BOT_TOKEN is unset")
        total_s = self._timeout_s * (RATE_LIMIT_RETRIES + 1)
        budget = remaining_budget()
        if budget is not None:
            total_s = min(total_s, budget)
        try:
            async with asyncio.timeout(max(total_s, 0.0)):
                await self._web.chat_postMessage(channel=channel, text=text)
        except TimeoutError:
            result = SlackResult(False, "timeout", f"no answer within {total_s:.3g} s")
        except SlackApiError as exc:
            error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            status = exc.response.status_code
            error_class = "rate_limited" if status == 429 else "api_error"
            result = SlackResult(False, error_class, f"status {status} {error or ''}".strip())
        except aiohttp.ClientConnectorError as exc:
            # No connection was ever made (refused, DNS): Slack certainly did not post it.
            result = SlackResult(False, "unreachable", f"{type(exc).__name__}: {exc}")
        except aiohttp.ClientError as exc:
            # The connection broke mid-request: Slack may or may not have posted it.
            result = SlackResult(False, "connection", f"{type(exc).__name__}: {exc}")
        except SlackClientError as exc:
            result = SlackResult(False, "api_error", f"{type(exc).__name__}: {exc}")
        else:
            return SlackResult(True)
        log.warning(
            "slack_failure",
            extra={
                "event": "outbound_failure",
                "service": "slack",
                "method": "POST",
                "url": "chat.postMessage",
                "error_class": result.error_class,
                "error": result.error,
            },
        )
        return result

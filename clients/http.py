"""The HTTP policy every provider call goes through: one aiohttp session, timeouts, retries.

``HttpPolicy.request`` returns an ``HttpResponse`` for any status below 400 and otherwise raises
exactly one ``OutboundError`` subclass:

- ``OutboundTimeout``: our deadline passed (the attempt's timeout, the retry cap's total time,
  or the caller's ``time_budget``);
- ``OutboundConnectionError``: refused, reset, DNS, a body cut short;
- ``OutboundStatusError``: a 4xx or 5xx, with the provider's error type when its body names one.

``asyncio.CancelledError`` (the caller went away) is never caught here: it propagates at once,
is never retried, and logs nothing.

Retries: only for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS), only after a timeout, a
connection error, a 429 or a 5xx; exponential backoff with full jitter, or the server's
``Retry-After`` when it sends one; at most ``RetryPolicy.max_attempts`` attempts and
``RetryPolicy.max_total_s`` seconds in all.  A POST is never retried: once it may have reached
the server, sending it again could act twice.

Each failed attempt logs one line (``outbound_failure``) with its class, the service, the method,
the URL without its query string, and whether it will be retried.  Never headers or bodies: they
carry API keys and personal data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import json
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

from clients.context import remaining_budget

log = logging.getLogger("hookgate.clients.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_s: float = 0.25
    max_delay_s: float = 8.0
    max_total_s: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` when it is not JSON."""
        return json.loads(self.body)


class OutboundError(Exception):
    """A provider call failed.  ``error_class`` is one of timeout, connection, http_status."""

    error_class = "error"

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class OutboundTimeout(OutboundError):
    error_class = "timeout"


class OutboundConnectionError(OutboundError):
    error_class = "connection"


class OutboundStatusError(OutboundError):
    error_class = "http_status"

    def __init__(
        self, message: str, *, attempts: int, status: int, error_type: str | None, body: Any
    ) -> None:
        super().__init__(message, attempts=attempts)
        self.status = status
        self.error_type = error_type
        self.body = body


def provider_error_type(body: Any) -> str | None:
    """The error type a provider names in its error body: ``{"type": …}`` (Unipile, RFC 7807),
    ``{"error": {"type"|"code": …}}`` (OpenAI), ``{"error": "…"}`` (Slack and many others)."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("type"), str):
        return str(body["type"])
    error = body.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("type", "code"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return None


def retry_after_s(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; ``None`` if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def _status_error(response: HttpResponse, attempts: int) -> OutboundStatusError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error_type = provider_error_type(body)
    message = f"HTTP {response.status}" + (f" {error_type}" if error_type else "")
    return OutboundStatusError(
        message, attempts=attempts, status=response.status, error_type=error_type, body=body
    )


class HttpPolicy:
    """The one way hookgate sends an HTTP request to another service."""

    def __init__(self, session: aiohttp.ClientSession, retry: RetryPolicy | None = None) -> None:
        self.session = session
        self.retry = retry or RetryPolicy()

    async def request(
        self,
        method: str,
        url: str,
        *,
        service: str,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send one request under the policy; see the module docstring for what it raises."""
        method = method.upper()
        retryable_method = method in IDEMPOTENT_METHODS
        started = time.monotonic()
        total_s = self.retry.max_total_s
        budget = remaining_budget()
        if budget is not None:
            total_s = min(total_s, budget)
        where = url.split("?", 1)[0]
        for attempt in range(1, max(1, self.retry.max_attempts) + 1):
            left = total_s - (time.monotonic() - started)
            if left <= 0:
                failure: OutboundError = OutboundTimeout(
                    "no time left before the deadline", attempts=attempt - 1
                )
                self._log(failure, service, method, where, attempt - 1, None)
                raise failure
            retry_after: float | None = None
            try:
                response = await self._attempt(
                    method, url, min(timeout_s, left), headers, params, json_body, form
                )
            except TimeoutError:
                failure = OutboundTimeout(
                    f"no answer within {min(timeout_s, left):.3g} s", attempts=attempt
                )
                retryable = True
            except aiohttp.ClientError as exc:
                failure = OutboundConnectionError(f"{type(exc).__name__}: {exc}", attempts=attempt)
                retryable = True
            else:
                if response.status < 400:
                    return response
                failure = _status_error(response, attempt)
                retryable = response.status == 429 or response.status >= 500
                retry_after = retry_after_s(response.headers.get("Retry-After"))
            delay = self._delay(attempt, retry_after) if retryable and retryable_method else None
            elapsed = time.monotonic() - started
            if delay is not None and (
                attempt >= self.retry.max_attempts or elapsed + delay >= total_s
            ):
                delay = None
            self._log(failure, service, method, where, attempt, delay)
            if delay is None:
                raise failure
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    async def _attempt(
        self,
        method: str,
        url: str,
        timeout_s: float,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        json_body: Any,
        form: Mapping[str, str] | None,
    ) -> HttpResponse:
        data: aiohttp.FormData | None = None
        if form is not None:
            data = aiohttp.FormData(dict(form), default_to_multipart=True)
        async with self.session.request(
            method,
            url,
            headers=headers,
            params=params,
            json=json_body,
            data=data,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            body = await resp.read()
            return HttpResponse(resp.status, CIMultiDict(resp.headers), body)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.retry.max_delay_s, self.retry.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    @staticmethod
    def _log(
        failure: OutboundError,
        service: str,
        method: str,
        where: str,
        attempt: int,
        retry_in_s: float | None,
    ) -> None:
        log.warning(
            "outbound_failure",
            extra={
                "event": "outbound_failure",
                "service": service,
                "method": method,
                "url": where,
                "error_class": failure.error_class,
                "status": getattr(failure, "status", None),
                "error_type": getattr(failure, "error_type", None),
                "error": str(failure),
                "attempt": attempt,
                "will_retry": retry_in_s is not None,
                "retry_in_s": None if retry_in_s is None else round(retry_in_s, 3),
            },
        )

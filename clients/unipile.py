"""Unipile: is a workspace's LinkedIn account connected, and send a LinkedIn message.

``UNIPILE_BASE_URL`` is the account's DSN (``https://apiN.unipile.com:PORT``); requests go to
``{base}/api/v1/…`` with the ``X-API-KEY`` header (``UNIPILE_API_KEY``).  Either unset turns
Unipile off: every call answers ``error_class="disabled"``.

``check_account`` tells three outcomes apart, because the health cron must only raise a banner
for the first:
- disconnected (``connected=False`` with a ``reason``): a 401/403 whose ``type`` names an
  account problem (``errors/disconnected_account``, ``errors/invalid_credentials``, …), or an
  account whose source status is not ``OK`` (``reason="status:CREDENTIALS"``);
- connected;
- unknown (``error_class`` set): a timeout, a connection error, any other HTTP status (a wrong
  API key is our problem, not the account's) or an unreadable body.  Callers must not treat
  these as disconnected.

An account that answers also says whose it is: ``own_id`` is the owner's LinkedIn member id
(``connection_params.im.id``), the ``attendee_provider_id`` of the messages the owner sends.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

from clients.http import HttpPolicy, OutboundError, OutboundStatusError
from clients.results import SendResult, describe

SERVICE = "unipile"
DISABLED = "UNIPILE_BASE_URL or UNIPILE_API_KEY is unset"

# Unipile's error types that mean "this account needs its owner's attention" (its OpenAPI spec,
# ../shared/fixtures/PROVIDERS.md §3).  Any other 401, e.g. a bad API key, is not about the account.
ACCOUNT_ERROR_TYPES = frozenset(
    {
        "errors/disconnected_account",
        "errors/invalid_credentials",
        "errors/expired_credentials",
        "errors/disconnected_feature",
        "errors/account_restricted",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class AccountCheck:
    connected: bool
    reason: str | None = None
    error_class: str | None = None
    error: str | None = None
    own_id: str | None = None  # the owner's LinkedIn member id, when the account says it


class UnipileClient:
    def __init__(self, http: HttpPolicy, *, base_url: str, api_key: str, timeout_s: float) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout_s = timeout_s

    @property
    def enabled(self) -> bool:
        return bool(self._base_url and self._api_key)

    async def check_account(self, account_id: str) -> AccountCheck:
        """``GET /api/v1/accounts/{account_id}``, read as connected, disconnected or unknown."""
        if not self.enabled:
            return AccountCheck(False, None, "disabled", DISABLED)
        try:
            response = await self._http.request(
                "GET",
                f"{self._base_url}/api/v1/accounts/{quote(account_id, safe='')}",
                service=SERVICE,
                timeout_s=self._timeout_s,
                headers=self._headers(),
            )
        except OutboundStatusError as exc:
            if exc.status in (401, 403) and exc.error_type in ACCOUNT_ERROR_TYPES:
                return AccountCheck(False, exc.error_type)
            return AccountCheck(False, None, exc.error_class, describe(exc))
        except OutboundError as exc:
            return AccountCheck(False, None, exc.error_class, describe(exc))
        try:
            account = response.json()
        except ValueError:
            return AccountCheck(False, None, "invalid_response", "the body is not JSON")
        statuses = _source_statuses(account)
        if not statuses:
            return AccountCheck(False, None, "invalid_response", "the account has no status")
        own_id = _own_id(account)
        for status in statuses:
            if status != "OK":
                return AccountCheck(False, f"status:{status}", own_id=own_id)
        return AccountCheck(True, own_id=own_id)

    async def send_message(self, chat_id: str, text: str) -> SendResult:
        """``POST /api/v1/chats/{chat_id}/messages`` (multipart ``text``).  Never retried."""
        if not self.enabled:
            return SendResult(False, None, "disabled", DISABLED)
        try:
            response = await self._http.request(
                "POST",
                f"{self._base_url}/api/v1/chats/{quote(chat_id, safe='')}/messages",
                service=SERVICE,
                timeout_s=self._timeout_s,
                headers=self._headers(),
                form={"text": text},
            )
        except OutboundError as exc:
            return SendResult.failed(exc)
        try:
            body = response.json()
        except ValueError:
            body = None
        message_id = body.get("message_id") if isinstance(body, dict) else None
        return SendResult(True, None if message_id is None else str(message_id))

    def _headers(self) -> dict[str, str]:
        return {"X-API-KEY": self._api_key, "Accept": "application/json"}


def _source_statuses(account: Any) -> list[str]:
    """The statuses an account reports: each of its ``sources[].status`` (the messaging source
    of a LinkedIn account, …), or a top-level ``status`` when there are no sources."""
    if not isinstance(account, dict):
        return []
    sources = account.get("sources")
    if isinstance(sources, list):
        found = [str(s["status"]) for s in sources if isinstance(s, dict) and "status" in s]
        if found:
            return found
    status = account.get("status")
    return [str(status)] if isinstance(status, str) else []


def _own_id(account: dict[str, Any]) -> str | None:
    """The owner's LinkedIn member id: ``connection_params.im.id`` of a messaging account."""
    params = account.get("connection_params")
    im = params.get("im") if isinstance(params, dict) else None
    own = im.get("id") if isinstance(im, dict) else None
    return own.strip() or None if isinstance(own, str) else None

"""EmailBison (and its white-label instances such as Inboxxia): per-workspace API calls.

Each workspace carries its own API key and instance URL (``workspaces.emailbison_api_key``,
``workspaces.emailbison_base_url``, e.g. ``https://dedi.emailbison.com``).  Requests send
``Authorization: Bearer <key>``; EmailBison wraps answers in ``{"data": …}``.

- ``fetch_lead``: ``GET /api/leads/{id or email}``;
- ``fetch_lead_emails``: ``GET /api/leads/{id or email}/sent-emails`` and ``…/replies``;
- ``send_reply``: ``POST /api/replies/{reply_id}/reply`` (never retried).

Every method returns a result (``clients.results``) rather than raising, so a job can log the
failure and carry on.  The timeout is ``EMAILBISON_TIMEOUT_MS``, clamped to [1 s, 60 s].
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from clients.http import HttpPolicy, HttpResponse, OutboundError
from clients.results import FetchResult, SendResult
from sql import Row

SERVICE = "emailbison"


class EmailBisonClient:
    def __init__(self, http: HttpPolicy, timeout_s: float) -> None:
        self._http = http
        self._timeout_s = timeout_s

    async def fetch_lead(self, workspace: Row, email: str) -> FetchResult:
        """The lead as EmailBison knows it (``data`` is its ``data`` object)."""
        return await self._get_data(workspace, f"/api/leads/{quote(email, safe='')}")

    async def fetch_lead_emails(self, workspace: Row, lead: str) -> FetchResult:
        """The campaign emails sent to a lead and the replies it sent, by lead id or email:
        ``data`` is ``{"sent_emails": [...], "replies": [...]}``.  Both requests run together;
        if either fails, the result is that failure."""
        base = f"/api/leads/{quote(lead, safe='')}"
        sent, replies = await asyncio.gather(
            self._get_data(workspace, f"{base}/sent-emails"),
            self._get_data(workspace, f"{base}/replies"),
        )
        for part in (sent, replies):
            if not part.ok:
                return part
        return FetchResult(
            True, {"sent_emails": _items(sent.data), "replies": _items(replies.data)}
        )

    async def send_reply(
        self,
        workspace: Row,
        reply_id: str,
        body: str,
        *,
        sender_email_id: int | None = None,
        to_email: str | None = None,
        content_type: str = "text",
    ) -> SendResult:
        """Answer the reply ``reply_id`` in its thread.  EmailBison wants the sending mailbox
        (``sender_email_id``) and the recipient (``to_email``); pass them when the inbound reply
        named them.  Sent at most once: a timeout here means "unknown", never "retry"."""
        configured = _credentials(workspace)
        if isinstance(configured, str):
            return SendResult(False, None, "not_configured", configured)
        base_url, api_key = configured
        payload: dict[str, Any] = {"message": body, "content_type": content_type}
        if sender_email_id is not None:
            payload["sender_email_id"] = sender_email_id
        if to_email is not None:
            payload["to_emails"] = [{"name": None, "email_address": to_email}]
        try:
            response = await self._http.request(
                "POST",
                f"{base_url}/api/replies/{quote(reply_id, safe='')}/reply",
                service=SERVICE,
                timeout_s=self._timeout_s,
                headers=_headers(api_key),
                json_body=payload,
            )
        except OutboundError as exc:
            return SendResult.failed(exc)
        return SendResult(True, _sent_reply_id(response))

    async def _get_data(self, workspace: Row, path: str) -> FetchResult:
        configured = _credentials(workspace)
        if isinstance(configured, str):
            return FetchResult(False, None, "not_configured", configured)
        base_url, api_key = configured
        try:
            response = await self._http.request(
                "GET",
                f"{base_url}{path}",
                service=SERVICE,
                timeout_s=self._timeout_s,
                headers=_headers(api_key),
            )
        except OutboundError as exc:
            return FetchResult.failed(exc)
        try:
            body = response.json()
        except ValueError:
            return FetchResult(False, None, "invalid_response", "the body is not JSON")
        if not isinstance(body, dict):
            return FetchResult(False, None, "invalid_response", "the body is not a JSON object")
        data = body.get("data", body)
        return FetchResult(True, data if isinstance(data, dict) else {"items": data})


def _credentials(workspace: Row) -> tuple[str, str] | str:
    """``(base_url, api_key)``, or why the workspace cannot call EmailBison."""
    base_url = (workspace.get("emailbison_base_url") or "").rstrip("/")
    api_key = workspace.get("emailbison_api_key") or ""
    if not base_url or not api_key:
        return "the workspace has no EmailBison API key and base URL"
    return base_url, api_key


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}


def _items(data: dict[str, Any] | None) -> list[Any]:
    items = (data or {}).get("items", [])
    return items if isinstance(items, list) else []


def _sent_reply_id(response: HttpResponse) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    reply = data.get("reply")
    found = reply.get("id") if isinstance(reply, dict) else data.get("id")
    return None if found is None else str(found)

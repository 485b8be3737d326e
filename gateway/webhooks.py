"""``POST /webhooks/{provider}/{workspace_id}``: the shared path every provider goes through.

Order matters and is the contract: the size limit and the body's deadline, the token and the
provider's own checks all come before any write; the body is parsed only once the sender is
known to be the workspace's provider.  Then the provider's parser normalises the delivery and
``gateway.ingest`` stores it.  A JSON object the parser cannot read is kept raw in the quarantine
(``gateway.quarantine``) and answered 202 (200 to Unipile, which retries anything else), for
replay once the parser is fixed.  Every answer is counted once, in ``_answered``: the Prometheus
counters and ``delivery_stats`` (its outcome and the time since the handler began).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.events import ParseError, ReplayedDelivery
from gateway.ingest import ingest_delivery
from gateway.notices import record_notices
from gateway.providers import PROVIDERS, Delivery, Provider
from gateway.quarantine import QuarantineFull, quarantine_delivery
from gateway.runtime import Runtime
from gateway.workspaces import is_workspace_id
from sql import DatabaseUnavailable

log = logging.getLogger("hookgate.webhooks")

RETRY_AFTER_S = "5"


class Rejected(Exception):
    """A delivery answered with an error status; nothing was stored."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = headers


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def receive(request: Request) -> Response:
    """One provider delivery, answered once it is stored (or known not to need storing).
    ---
    summary: Receive a provider's webhook delivery
    tags: [webhooks]
    description: >-
      Size, token and the provider's own checks come before any write; a rejected delivery
      stores nothing.  Tenancy comes from the path and the token, never from the payload.
    parameters:
      - {name: provider, in: path, required: true, schema: {$ref: '#/components/schemas/Provider'}}
      - name: workspace_id
        in: path
        required: true
        schema: {$ref: '#/components/schemas/WorkspaceId'}
    security:
      - webhookToken: []
      - webhookBearer: []
      - unipileAuth: []
      - instantlySecret: []
    requestBody:
      required: true
      description: >-
        The provider's JSON object, as it sent it (the raw bytes are what a signature covers;
        SmartLead's `secret_key` is inside the body).
      content:
        application/json:
          schema: {type: object}
    responses:
      "200":
        description: >-
          Stored, already stored (`deduped`), or not a message (`ignored`).  On `unipile`, which
          retries anything but exactly 200, a quarantined delivery is answered 200 as well.
        content:
          application/json:
            schema:
              oneOf:
                - {$ref: '#/components/schemas/Stored'}
                - {$ref: '#/components/schemas/Ignored'}
                - {$ref: '#/components/schemas/Quarantined'}
      "202":
        description: No parser could read it; kept raw for replay (on `unipile` a 200 instead).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Quarantined'}
      "400":
        description: >-
          Not JSON, not a JSON object, not UTF-8, an invalid Content-Length, or the workspace's
          quarantine is full for this hour.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "404":
        description: No such provider.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "408":
        description: The body did not arrive within WEBHOOK_BODY_TIMEOUT_S (the connection closes).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "409":
        description: A GoHighLevel `webhookId` already received with another message (a replay).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "413":
        description: The body is larger than WEBHOOK_MAX_BODY_BYTES.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "429":
        description: On `ghl` (GoHighLevel retries only a 429), the database is unreachable.
        headers:
          Retry-After: {$ref: '#/components/headers/RetryAfter'}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "500":
        description: An unexpected error; nothing was stored, and the provider should retry.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "503": {$ref: '#/components/responses/Unavailable'}
    """
    started = time.perf_counter()
    runtime: Runtime = request.app.state.runtime
    provider = PROVIDERS.get(request.path_params["provider"])
    if provider is None:
        return json_response(404, {"success": False, "error": "unknown provider"})
    try:
        body = await _handle(runtime, provider, request)
    except Rejected as rejected:
        _answered(runtime, provider, f"rejected_{rejected.status}", started)
        return json_response(
            rejected.status, {"success": False, "error": rejected.error}, rejected.headers
        )
    except DatabaseUnavailable as exc:
        _answered(runtime, provider, "unavailable", started)
        log.warning("database unavailable", extra={"provider": provider.name, "error": str(exc)})
        return json_response(
            provider.retry_status,
            {"success": False, "error": "database unavailable, retry later", "retryable": True},
            {"Retry-After": RETRY_AFTER_S},
        )
    except Exception:
        # Not stored, and not the sender's fault: ask for a retry rather than lose the delivery.
        _answered(runtime, provider, "error", started)
        log.exception("webhook failed", extra={"provider": provider.name})
        status = 500 if provider.retry_status == 503 else provider.retry_status
        return json_response(status, {"success": False, "error": "internal error"})
    if body.get("quarantined"):
        _answered(runtime, provider, "quarantined", started)
        return json_response(provider.quarantine_status, body)
    if body.get("deduped"):
        _answered(runtime, provider, "deduped", started, copy_of=body.get("message_id"))
    else:
        _answered(runtime, provider, "ignored" if body.get("ignored") else "stored", started)
    return json_response(200, body)


def _answered(
    runtime: Runtime, provider: Provider, outcome: str, started: float, copy_of: int | None = None
) -> None:
    """What every answered delivery records, once, by outcome: ``stored``, ``deduped``,
    ``ignored``, ``quarantined``, ``rejected_<status>``, ``unavailable`` or ``error``.  The
    Prometheus counters, and ``delivery_stats`` (``rejected_<status>`` as ``rejected``) with the
    latency since the handler began and, for a deduped one, the message it is a copy of."""
    runtime.metrics.count_webhook(provider.name, outcome)
    stats_outcome = "rejected" if outcome.startswith("rejected_") else outcome
    latency_s = time.perf_counter() - started
    runtime.delivery_stats.record(provider.name, stats_outcome, latency_s, copy_of)


async def _handle(runtime: Runtime, provider: Provider, request: Request) -> dict[str, Any]:
    settings = runtime.settings
    workspace_id = request.path_params["workspace_id"]
    if not is_workspace_id(workspace_id):
        raise Rejected(401, "unauthorized")
    raw_body = await _read_body(
        request, settings.webhook_max_body_bytes, settings.webhook_body_timeout_s
    )
    workspace = await runtime.workspaces.get(workspace_id)
    if workspace is None:
        raise Rejected(401, "unauthorized")
    delivery = Delivery(
        provider=provider.name,
        workspace=workspace,
        headers=request.headers,
        query=request.query_params,
        raw_body=raw_body,
        received_at=runtime.clock(),
        settings=settings,
    )
    if not provider.authenticate(delivery):
        raise Rejected(401, "unauthorized")
    payload = _parse_json(raw_body)
    if not provider.verify_payload(payload, delivery):
        raise Rejected(401, "unauthorized")
    try:
        outcome = await ingest_delivery(runtime.db, provider, payload, delivery)
    except ParseError as exc:
        # Authenticated and well-formed, but unreadable: kept for replay, never lost.
        try:
            quarantined = await quarantine_delivery(runtime.db, delivery, str(exc))
        except QuarantineFull as full:
            raise Rejected(400, str(full)) from None
        return quarantined.answer()
    except ReplayedDelivery as exc:
        raise Rejected(409, str(exc)) from None
    if outcome.notices:
        await record_notices(runtime, workspace, outcome.notices)
    return outcome.answer()


async def _read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise Rejected(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # One deadline for the whole body: a sender trickling a byte at a time must not hold
        # the request (and its place in the server) for ever.
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Rejected(413, f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        # What is left of the body is never read: the connection cannot carry another request.
        raise Rejected(
            408, f"body not received within {timeout_s:g} s", {"Connection": "close"}
        ) from None
    return b"".join(chunks)


def _parse_json(raw_body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "UTF-8" in text:
            raise Rejected(400, "body is not valid UTF-8") from None
        raise Rejected(400, f"body is not valid JSON: {text}") from None
    if not isinstance(payload, dict):
        raise Rejected(400, f"body must be a JSON object, got {type(payload).__name__}")
    return payload

"""Admin routes for integrations and context packs, and ``POST /cron/{name}``.

- ``GET /api/workspaces/{id}/integrations`` (admin token): each integration's state, and the
  banners a UI shows for those that are not ok.
- ``POST /api/workspaces/{id}/context-packs`` (admin token): ask for a context pack; 201 with
  the new pack, or 200 with the workspace's open one (at most one is open at a time).
- ``POST /api/drafts/{id}/send`` (admin token): send an AI draft (``scheduler.drafts``); 202 with
  the draft's one outbound message id, the same however often it is pressed; 404 for an unknown
  draft, 422 for an SMS draft (no SMS sender exists).  The job is claimed at once by this
  process's runner when it has a free slot (``Runtime.job_due``), not at its next poll.
- ``POST /api/drafts/{id}/auto-send/cancel`` (admin token): stop the draft's scheduled auto-send
  (``scheduler.auto_send``); 200 once it is cancelled (by this call or an earlier one), 409 when
  there is nothing to stop (never scheduled, skipped, or too late: sending or sent), 404 for an
  unknown draft.
- ``POST /cron/{name}`` (``Authorization: Bearer $CRON_SECRET``, compared in constant time
  before anything touches the database): run a cron now and answer with its outcome; 409 when
  it is running already (here or on another replica); 401 for a wrong or missing secret, and
  always while ``CRON_SECRET`` is unset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin import require_admin
from gateway.runtime import Runtime
from gateway.webhooks import RETRY_AFTER_S, json_response
from scheduler.alerts import INTEGRATION_LABELS
from scheduler.auto_send import cancel_auto_send, not_cancellable
from scheduler.crons import CronBusy, CronService
from scheduler.drafts import DraftNotSendable, queue_draft_send
from sql import ConstraintViolation, Database, DatabaseUnavailable, Row

OPEN_PACK_ATTEMPTS = 3
CANCELLED_THROUGH_API = "cancelled through the admin API"


def database_unavailable(exc: DatabaseUnavailable) -> Response:
    return json_response(
        503,
        {"success": False, "error": f"database unavailable: {exc}", "retryable": True},
        {"Retry-After": RETRY_AFTER_S},
    )


def banner(row: Row) -> dict[str, Any] | None:
    """What a UI shows for an integration that is not ok (None when it is)."""
    if row["status"] == "ok":
        return None
    label = INTEGRATION_LABELS.get(row["integration"], row["integration"])
    since = row["since"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    reason = f" ({row['reason']})" if row["reason"] else ""
    return {
        "integration": row["integration"],
        "level": "error",
        "title": f"{label} {row['status']}",
        "text": f"The {label} is {row['status']}{reason} since {since}. Reconnect it in Unipile.",
        "since": row["since"],
    }


async def create_context_pack(
    db: Database, workspace_id: str, now: dt.datetime
) -> tuple[Row, bool] | None:
    """The workspace's new pack (True) or its open one (False); None for an unknown workspace.
    Race-safe: the insert does nothing when a pack is open, and a pack that closes between that
    and the lookup is retried (a bounded number of times)."""
    for _ in range(OPEN_PACK_ATTEMPTS):
        try:
            created = await db.fetch_one("create_context_pack", workspace_id=workspace_id, now=now)
        except ConstraintViolation:
            return None  # no such workspace (foreign key)
        if created is not None:
            return created, True
        existing = await db.fetch_one("open_context_pack", workspace_id=workspace_id)
        if existing is not None:
            return existing, False
    raise RuntimeError(f"workspace {workspace_id}: its open pack kept closing; try again")


async def workspace_integrations(request: Request) -> Response:
    """Each integration's state, and the banners a UI shows for those that are not ok.
    ---
    summary: A workspace's integrations
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/WorkspaceId'}]
    responses:
      "200":
        description: The integrations and their banners.
        content:
          application/json:
            schema:
              type: object
              required: [success, workspace_id, integrations, banners]
              properties:
                success: {const: true}
                workspace_id: {type: string}
                integrations:
                  type: array
                  items:
                    type: object
                    required: [integration, status, reason, since, last_error, checked_at]
                    properties:
                      integration: {type: string}
                      status: {type: string}
                      reason: {type: [string, 'null']}
                      since: {$ref: '#/components/schemas/Timestamp'}
                      last_error: {type: [string, 'null']}
                      checked_at: {$ref: '#/components/schemas/OptionalTimestamp'}
                banners:
                  type: array
                  items:
                    type: object
                    required: [integration, level, title, text, since]
                    properties:
                      integration: {type: string}
                      level: {enum: [error]}
                      title: {type: string}
                      text: {type: string}
                      since: {$ref: '#/components/schemas/Timestamp'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    workspace_id = request.path_params["id"]
    if await runtime.db.fetch_one("get_workspace", id=workspace_id) is None:
        return json_response(404, {"success": False, "error": f"no workspace {workspace_id}"})
    rows = await runtime.db.fetch_all("workspace_integrations", workspace_id=workspace_id)
    integrations = [
        {
            key: row[key]
            for key in ("integration", "status", "reason", "since", "last_error", "checked_at")
        }
        for row in rows
    ]
    banners = [b for b in (banner(row) for row in rows) if b is not None]
    return json_response(
        200,
        {
            "success": True,
            "workspace_id": workspace_id,
            "integrations": integrations,
            "banners": banners,
        },
    )


async def request_context_pack(request: Request) -> Response:
    """A new context pack for the workspace, or the one it has open already.
    ---
    summary: Ask for a context pack
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/WorkspaceId'}]
    responses:
      "200":
        description: The workspace's open pack (at most one is open at a time).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/PackAnswer'}
      "201":
        description: A new pack, pending.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/PackAnswer'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    workspace_id = request.path_params["id"]
    found = await create_context_pack(runtime.db, workspace_id, runtime.clock())
    if found is None:
        return json_response(404, {"success": False, "error": f"no workspace {workspace_id}"})
    pack, created = found
    return json_response(
        201 if created else 200, {"success": True, "created": created, "pack": pack}
    )


async def send_draft(request: Request) -> Response:
    """Send an AI draft: one outbound message, the same however often it is pressed.
    ---
    summary: Send an AI draft
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/DraftId'}]
    responses:
      "202":
        description: The send is queued (or was already); its one outbound message.
        content:
          application/json:
            schema:
              type: object
              required: [success, draft_id, message_id, status]
              properties:
                success: {const: true}
                draft_id: {$ref: '#/components/schemas/RowId'}
                message_id: {$ref: '#/components/schemas/RowId'}
                status: {type: string}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
      "422":
        description: This draft cannot be sent (an SMS draft, for which no sender exists).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "503": {$ref: '#/components/responses/Unavailable'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    draft_id: int = request.path_params["id"]
    try:
        queued = await queue_draft_send(
            runtime.db,
            draft_id,
            now=runtime.clock(),
            max_attempts=runtime.settings.job_max_attempts,
        )
    except DraftNotSendable as exc:
        return json_response(422, {"success": False, "error": str(exc)})
    except DatabaseUnavailable as exc:
        return database_unavailable(exc)
    if queued is None:
        return json_response(404, {"success": False, "error": f"no draft {draft_id}"})
    if queued.job_due:
        runtime.job_due()
    return json_response(
        202,
        {
            "success": True,
            "draft_id": queued.draft_id,
            "message_id": queued.message_id,
            "status": queued.status,
        },
    )


async def cancel_draft_auto_send(request: Request) -> Response:
    """Stop a draft's scheduled auto-send.
    ---
    summary: Cancel a draft's auto-send
    tags: [admin]
    security: [{adminToken: []}]
    parameters: [{$ref: '#/components/parameters/DraftId'}]
    responses:
      "200":
        description: The auto-send is cancelled (by this call or an earlier one).
        content:
          application/json:
            schema: {$ref: '#/components/schemas/AutoSendState'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "403": {$ref: '#/components/responses/AdminOff'}
      "404": {$ref: '#/components/responses/NotFound'}
      "409":
        description: >-
          Nothing to stop (never scheduled, skipped, or too late: sending or sent); `error` says
          which.
        content:
          application/json:
            schema:
              allOf:
                - {$ref: '#/components/schemas/Error'}
                - {$ref: '#/components/schemas/AutoSendState'}
      "503": {$ref: '#/components/responses/Unavailable'}
    """
    if (denied := require_admin(request)) is not None:
        return denied
    runtime: Runtime = request.app.state.runtime
    draft_id: int = request.path_params["id"]
    try:
        state = await cancel_auto_send(runtime.db, draft_id, reason=CANCELLED_THROUGH_API)
    except DatabaseUnavailable as exc:
        return database_unavailable(exc)
    if state is None:
        return json_response(404, {"success": False, "error": f"no draft {draft_id}"})
    draft = {key: state[key] for key in ("status", "auto_send", "auto_send_reason")}
    if (refused := not_cancellable(state)) is not None:
        return json_response(
            409, {"success": False, "error": refused, "draft_id": draft_id, **draft}
        )
    return json_response(200, {"success": True, "draft_id": draft_id, **draft})


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def cron_secret_ok(request: Request, expected: str) -> bool:
    """Bearer ``CRON_SECRET``, compared in constant time (digests of equal length leak neither
    the secret nor its length).  Never true while the secret is unset."""
    authorization = request.headers.get("authorization", "")
    presented = authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""
    return bool(expected) and hmac.compare_digest(_digest(presented), _digest(expected))


async def run_cron(request: Request) -> Response:
    """Run a cron now and answer with its outcome (the secret is checked before anything else).
    ---
    summary: Run a cron now
    tags: [crons]
    security: [{cronSecret: []}]
    parameters:
      - name: name
        in: path
        required: true
        schema: {enum: [context_packs, unipile_health]}
    responses:
      "200":
        description: The run's end (`success` is false for an outcome other than ok or skipped).
        content:
          application/json:
            schema:
              type: object
              required: [success, cron, outcome, started_at, finished_at, error, detail,
                         breaker_opened_at]
              properties:
                success: {type: boolean}
                cron: {type: string}
                outcome: {type: string}
                started_at: {$ref: '#/components/schemas/Timestamp'}
                finished_at: {$ref: '#/components/schemas/Timestamp'}
                error: {type: [string, 'null']}
                detail: {type: object}
                breaker_opened_at: {$ref: '#/components/schemas/OptionalTimestamp'}
      "401": {$ref: '#/components/responses/Unauthorized'}
      "404": {$ref: '#/components/responses/NotFound'}
      "409":
        description: It is running already, here or on another replica.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      "503": {$ref: '#/components/responses/Unavailable'}
    """
    runtime: Runtime = request.app.state.runtime
    if not cron_secret_ok(request, runtime.settings.cron_secret):
        return json_response(401, {"success": False, "error": "unauthorized"})
    crons: CronService = request.app.state.crons
    name = request.path_params["name"]
    if name not in crons.specs:
        known = ", ".join(sorted(crons.specs))
        return json_response(404, {"success": False, "error": f"no cron {name!r} ({known})"})
    try:
        run = await crons.run_now(name)
    except CronBusy:
        return json_response(409, {"success": False, "error": f"cron {name} is running already"})
    except DatabaseUnavailable as exc:
        return database_unavailable(exc)
    return json_response(200, {"success": run.outcome in ("ok", "skipped"), **run.as_dict()})


ROUTES = [
    Route("/api/workspaces/{id}/integrations", workspace_integrations, methods=["GET"]),
    Route("/api/workspaces/{id}/context-packs", request_context_pack, methods=["POST"]),
    Route("/api/drafts/{id:row_id}/send", send_draft, methods=["POST"]),
    Route("/api/drafts/{id:row_id}/auto-send/cancel", cancel_draft_auto_send, methods=["POST"]),
    Route("/cron/{name}", run_cron, methods=["POST"]),
]

"""The operator console's actions: forms posted with the session's CSRF token
(``Operator.form_ok``), each calling the same function as its command or admin route — never a
second copy of the rule:

- ``POST /status/jobs/{id}/retry``: ``scheduler.queue.retry_job`` (``hookgate jobs retry``);
- ``POST /status/quarantine/{id}/replay`` and ``…/discard``: ``gateway.quarantine.replay`` and
  ``discard`` (``hookgate deliveries replay|discard``, ``/api/quarantine/{id}/…``);
- ``POST /status/alerts/{id}/resend`` and ``/status/messages/{id}/resend-notification``:
  ``scheduler.alerts.resend_alert`` and ``scheduler.lead_notifications.resend_notification``
  (``hookgate alerts resend [--message]``);
- ``POST /status/workspaces/{id}/context-packs``: ``gateway.api.create_context_pack``
  (``hookgate packs create``, ``POST /api/workspaces/{id}/context-packs``).

Each is audited: one JSON log line on ``hookgate.audit`` (logged whatever ``LOG_LEVEL`` says)
with who (``actor``), what (``action``), which id (``target_id``) and the ``outcome``, refusals
included; then a 303 back to the console page the form came from, which says what happened
(``status.flash``).  An unknown id is a 404 page.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from clients.slack import SlackClient, SlackResult
from gateway import quarantine
from gateway.api import create_context_pack
from gateway.quarantine_cli import describe as describe_replay
from gateway.runtime import Runtime
from gateway.status import Operator, flash, forbidden, not_found, signed_in, unavailable
from scheduler import queue
from scheduler.alerts import ResendRefused, resend_alert
from scheduler.alerts_cli import describe as describe_resend
from scheduler.lead_notifications import resend_notification
from sql import DatabaseUnavailable

audit = logging.getLogger("hookgate.audit")
audit.setLevel(logging.INFO)  # an audit trail does not depend on LOG_LEVEL

DELIVERY = "quarantined delivery"


@dataclasses.dataclass(frozen=True, slots=True)
class Done:
    """What an action did: ``outcome`` for the audit log, ``notice`` for the page, ``back`` the
    page to return to when the form names none."""

    outcome: str
    notice: str
    back: str
    ok: bool = True


Act = Callable[[Runtime, Any], Awaitable[Done | None]]


def action(path: str, name: str, act: Act, what: str) -> Route:
    """``POST path``: action ``name`` on the ``what`` the path names; sign-in, CSRF, the act,
    the audit line, the way back."""

    async def endpoint(request: Request) -> Response:
        operator = signed_in(request)
        if isinstance(operator, Response):
            return operator
        target = request.path_params["id"]
        form = await request.form()
        if not operator.form_ok(form):
            _audit(request, operator, name, target, "refused: no valid CSRF token")
            return forbidden(request, operator)
        try:
            done = await act(request.app.state.runtime, target)
        except DatabaseUnavailable as exc:
            _audit(request, operator, name, target, f"failed: database unavailable: {exc}")
            return unavailable(request, operator, exc)
        _audit(request, operator, name, target, done.outcome if done else "not found")
        if done is None:
            return not_found(request, operator, what, target)
        response = RedirectResponse(_local(form.get("next"), done.back), 303)
        flash(request, response, done.notice, ok=done.ok)
        return response

    return Route(path, endpoint, methods=["POST"])


def _audit(request: Request, operator: Operator, name: str, target: Any, outcome: str) -> None:
    client = request.client.host if request.client else None
    audit.info(
        "console action",
        extra={
            "actor": operator.actor,
            "client": client,
            "action": name,
            "target_id": target,
            "outcome": outcome,
        },
    )


def _local(candidate: object, default: str) -> str:
    """``candidate`` when it is a console page of this site, else ``default``."""
    if not isinstance(candidate, str) or "\\" in candidate:
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc or not parts.path.startswith("/status"):
        return default
    return candidate


async def retry_job(runtime: Runtime, job_id: int) -> Done | None:
    back = f"/status/jobs/{job_id}"
    if await queue.retry_job(runtime.db, job_id):
        runtime.job_due()
        return Done("retried", f"Job {job_id} is pending again, due now.", back)
    job = await runtime.db.fetch_one("console_job", id=job_id)
    if job is None:
        return None
    notice = f"Job {job_id} is {job['status']}: only a dead or pending job can be retried."
    return Done(f"not retried: {job['status']}", notice, back, ok=False)


async def replay_delivery(runtime: Runtime, delivery_id: int) -> Done | None:
    result = await quarantine.replay(runtime.db, runtime.settings, delivery_id)
    if result is None:
        return None
    outcome = "still unreadable" if not result.ok else "deduped" if result.deduped else "replayed"
    return Done(outcome, describe_replay(result), f"/status/quarantine/{delivery_id}", ok=result.ok)


async def discard_delivery(runtime: Runtime, delivery_id: int) -> Done | None:
    back = f"/status/quarantine/{delivery_id}"
    if await quarantine.discard(runtime.db, delivery_id):
        return Done("discarded", f"Delivery {delivery_id} discarded.", back)
    row = await runtime.db.fetch_one("get_quarantine", id=delivery_id)
    if row is None:
        return None
    notice = f"Delivery {delivery_id} is {row['status']}: only a pending one can be discarded."
    return Done(f"not discarded: {row['status']}", notice, back, ok=False)


async def resend_unknown_alert(runtime: Runtime, alert_id: int) -> Done | None:
    if await runtime.db.fetch_one("get_alert", id=alert_id) is None:
        return None
    return await _resend(f"alert {alert_id}", resend_alert(runtime.db, _slack(runtime), alert_id))


async def resend_unknown_notification(runtime: Runtime, message_id: int) -> Done | None:
    if await runtime.db.fetch_one("console_message", id=message_id) is None:
        return None
    what = f"message {message_id}'s notification"
    return await _resend(what, resend_notification(runtime, _slack(runtime), message_id))


def _slack(runtime: Runtime) -> SlackClient:
    assert runtime.clients is not None  # open_runtime opens them
    return runtime.clients.slack


async def _resend(what: str, resending: Awaitable[SlackResult]) -> Done:
    """A resend (``hookgate alerts resend``): what Slack said, or why it was refused."""
    try:
        result = await resending
    except ResendRefused as exc:
        return Done(f"refused: {exc}", f"Not re-sent: {exc}.", "/status/alerts", ok=False)
    return Done(result.verdict, describe_resend(what, result), "/status/alerts", ok=result.sent)


async def start_context_pack(runtime: Runtime, workspace_id: str) -> Done | None:
    found = await create_context_pack(runtime.db, workspace_id, runtime.clock())
    if found is None:
        return None
    pack, created = found
    if created:
        notice = f"Context pack #{pack['id']} is pending: the next context_packs run builds it."
        return Done(f"created pack {pack['id']}", notice, "/status/workspaces")
    notice = f"Context pack #{pack['id']} is already {pack['status']}: one at a time."
    return Done(f"already open: pack {pack['id']}", notice, "/status/workspaces", ok=False)


ROUTES = [
    action("/status/jobs/{id:row_id}/retry", "job.retry", retry_job, "job"),
    action("/status/quarantine/{id:row_id}/replay", "quarantine.replay", replay_delivery, DELIVERY),
    action(
        "/status/quarantine/{id:row_id}/discard", "quarantine.discard", discard_delivery, DELIVERY
    ),
    action("/status/alerts/{id:row_id}/resend", "alert.resend", resend_unknown_alert, "alert"),
    action(
        "/status/messages/{id:row_id}/resend-notification",
        "notification.resend",
        resend_unknown_notification,
        "message",
    ),
    action("/status/workspaces/{id}/context-packs", "pack.start", start_context_pack, "workspace"),
]

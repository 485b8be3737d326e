"""Per-workspace notices: set-up mistakes that deliveries reveal, shown on the status page.

A provider's parser attaches notices to the message it reads (``Message.notices``); once the
delivery is stored, the webhook route records them (``record_notices``).  A notice that is a
warning in itself is counted in Prometheus by workspace; every notice marks the workspace row
(``workspaces.<notice>_at``, on the database's clock) so that the status page of any replica
reads it.  A process refreshes a mark at most once per ``MARK_REFRESH_S`` per workspace (the hot
path does not write on every delivery), and the warning it raises fades ``WARNING_DAYS`` after
the last delivery that showed the mistake.

- ``ghl_undated_workflow_sms``: a GoHighLevel workflow SMS without the event's date and time in
  its Custom Data.  Its key then has nothing that tells two identical replies from one contact
  apart ("Yes", a week later): the second is answered ``deduped`` and merged into the first.
- ``ghl_workflow_sms`` / ``ghl_marketplace_sms``: an inbound GoHighLevel SMS in either shape.  A
  workspace that receives both lately gets each inbound SMS twice (the two shapes share no key).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sql import DatabaseError, Row

if TYPE_CHECKING:  # the runtime imports this module
    from gateway.runtime import Runtime

log = logging.getLogger("hookgate.notices")

UNDATED_WORKFLOW_SMS = "ghl_undated_workflow_sms"
WORKFLOW_SMS = "ghl_workflow_sms"
MARKETPLACE_SMS = "ghl_marketplace_sms"
NOTICES = (UNDATED_WORKFLOW_SMS, WORKFLOW_SMS, MARKETPLACE_SMS)

MARK_REFRESH_S = 3600
WARNING_DAYS = 7
MAX_REMEMBERED = 30_000

GHL_DATE_TIME = (
    "Date = {{right_now.year}}-{{right_now.month}}-{{right_now.day}} and "
    "Time = {{right_now.hour}}:{{right_now.minute}}:{{right_now.second}}"
)


async def record_notices(runtime: Runtime, workspace: Row, notices: Sequence[str]) -> None:
    """Count the warnings and refresh the workspace's marks that are due.  A mark that cannot
    be written is logged and tried again with the next delivery: the message is stored already,
    and its answer must not change."""
    now = runtime.clock()
    for notice in notices:
        if notice == UNDATED_WORKFLOW_SMS:
            runtime.metrics.ghl_undated_workflow_sms.labels(workspace["id"]).inc()
        remembered = (workspace["id"], notice)
        last = runtime.notice_marks.get(remembered) or workspace[f"{notice}_at"]
        if last is not None and (now - last).total_seconds() < MARK_REFRESH_S:
            continue
        try:
            await runtime.db.execute(f"mark_{notice}", id=workspace["id"], since_s=-MARK_REFRESH_S)
        except DatabaseError as exc:
            log.warning(
                "workspace notice not marked",
                extra={"workspace_id": workspace["id"], "notice": notice, "error": str(exc)},
            )
            continue
        if len(runtime.notice_marks) > MAX_REMEMBERED:
            runtime.notice_marks.clear()
        runtime.notice_marks[remembered] = now


def workspace_warnings(workspace: Row, now: dt.datetime) -> list[str]:
    """What the status page says about a workspace's marks (``workspaces.<notice>_at``)."""
    horizon = now - dt.timedelta(days=WARNING_DAYS)
    seen = {
        notice: when
        for notice in NOTICES
        if (when := workspace[f"{notice}_at"]) is not None and when > horizon
    }
    warnings = []
    if UNDATED_WORKFLOW_SMS in seen:
        warnings.append(
            "GoHighLevel workflow SMS arrive without the event's date and time in their Custom "
            f"Data (last at {_when(seen[UNDATED_WORKFLOW_SMS])}): identical replies from one "
            "contact are merged into one message. Add "
            f"{GHL_DATE_TIME} to the workflow's Custom Data."
        )
    if WORKFLOW_SMS in seen and MARKETPLACE_SMS in seen:
        warnings.append(
            "Inbound GoHighLevel SMS arrive both from a workflow webhook (last at "
            f"{_when(seen[WORKFLOW_SMS])}) and as marketplace InboundMessage events (last at "
            f"{_when(seen[MARKETPLACE_SMS])}): each SMS is stored twice. Keep one of the two."
        )
    return warnings


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

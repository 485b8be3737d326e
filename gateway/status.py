"""``GET /status``: a small server-rendered page for operators (Jinja2, no JavaScript).

Who may see it: a request with ``Authorization: Bearer <the admin token>``, or a browser holding
the session cookie that the login form (``POST /status/login``) or the sign-in URL
(``GET /status/login?token=…``, printed by a first ``hookgate serve`` on the embedded default)
sets after checking the same token in constant time (``gateway.admin_token``).  The cookie is
signed with itsdangerous (keyed by ``AdminToken.session_key``: a changed token signs every
browser out), HttpOnly, SameSite=Strict, limited to ``/status`` and valid for
``SESSION_MAX_AGE_S``.  Anyone else gets the login form and nothing else.

What it shows: each workspace's set-up warnings (``gateway.notices``) and integration banners
(with the day's alert and the repeats it suppressed), queue depth and dead jobs by type, dedupe
hits, cron runs (last start and end, outcome, when a breaker last opened), recent alerts with
their outcome (an ``unknown`` one with the command that re-sends it), interested-lead
notifications of unknown outcome, context packs, and pending quarantined deliveries.  Dedupe hits
are not stored anywhere: the page reads this process's Prometheus counter
(``hookgate_dedupe_hits_total``, by provider, since it started).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from gateway.admin import require_admin
from gateway.admin_token import AdminToken
from gateway.api import banner
from gateway.integrations import alert_day, alert_kind
from gateway.notices import workspace_warnings
from gateway.quarantine import pending_deliveries
from gateway.runtime import Runtime
from gateway.settings import PROVIDERS
from scheduler.crons import CronService
from scheduler.lead_notifications import unknown_notifications
from sql import database_now

COOKIE = "hookgate_status"
SESSION_MAX_AGE_S = 12 * 3600
ALERT_DAYS = 7
JOB_STATUSES = ("pending", "running", "succeeded", "dead")

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when


def _serializer(admin_token: AdminToken) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(admin_token.session_key, salt="hookgate-status-session")


def _is_admin(request: Request, admin_token: AdminToken) -> bool:
    if require_admin(request) is None:
        return True
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return False
    try:
        return bool(_serializer(admin_token).loads(cookie, max_age=SESSION_MAX_AGE_S) == "admin")
    except BadSignature:
        return False


def _login(request: Request, status: int, error: str | None = None) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=status)


def _off() -> Response:
    return PlainTextResponse("the status page is off: HOOKGATE_ADMIN_TOKEN is unset", 404)


async def status_page(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    admin_token: AdminToken | None = request.app.state.admin_token
    if admin_token is None:
        return _off()
    if not _is_admin(request, admin_token):
        return _login(request, 401)
    crons: CronService | None = getattr(request.app.state, "crons", None)
    context = await collect(runtime, crons)
    return templates.TemplateResponse(request, "status.html", dataclasses.asdict(context))


async def login(request: Request) -> Response:
    """The login form's ``POST``, and the sign-in URL's ``GET /status/login?token=…`` (what
    ``hookgate serve`` prints on a first run): a right token gets the session cookie."""
    admin_token: AdminToken | None = request.app.state.admin_token
    if admin_token is None:
        return _off()
    if request.method == "GET":
        presented = request.query_params.get("token", "")
    else:
        presented = str((await request.form()).get("token") or "")
    if not admin_token.matches(presented):
        return _login(request, 401, "That is not the admin token." if presented else None)
    response = RedirectResponse("/status", 303)
    response.set_cookie(
        COOKIE,
        _serializer(admin_token).dumps("admin"),
        max_age=SESSION_MAX_AGE_S,
        path="/status",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    response = RedirectResponse("/status", 303)
    response.delete_cookie(COOKIE, path="/status")
    return response


@dataclasses.dataclass
class StatusContext:
    now: dt.datetime
    workspaces: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    dedupe_hits: list[dict[str, Any]]
    crons: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    unknown_notifications: list[dict[str, Any]]
    packs: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]


async def collect(runtime: Runtime, crons: CronService | None) -> StatusContext:
    db = runtime.db
    now = runtime.clock()
    today = alert_day(now)
    since_day = alert_day(now - dt.timedelta(days=ALERT_DAYS - 1))
    alerts = await db.fetch_all("recent_alerts", since_day=since_day, limit=200)
    todays = {(a["workspace_id"], a["kind"]): a for a in alerts if a["day"] == today}

    workspaces: dict[str, dict[str, Any]] = {}
    for row in await db.fetch_all("integration_banners", limit=1000):
        entry = workspaces.setdefault(
            row["workspace_id"],
            {
                "id": row["workspace_id"],
                "name": row["workspace_name"],
                "warnings": workspace_warnings(row, now),
                "integrations": [],
            },
        )
        if row["integration"] is None:
            continue
        shown = banner(row)
        alert = todays.get((row["workspace_id"], alert_kind(row["integration"], row["status"])))
        entry["integrations"].append({**row, "banner": shown, "alert_today": alert})

    jobs: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(JOB_STATUSES, 0))
    for row in await db.fetch_all("job_counts"):
        jobs[row["type"]][row["status"]] = int(row["n"])

    registry = runtime.metrics.registry
    dedupe = [
        {
            "provider": provider,
            "hits": int(
                registry.get_sample_value("hookgate_dedupe_hits_total", {"provider": provider}) or 0
            ),
        }
        for provider in PROVIDERS
    ]

    runs = {row["name"]: row for row in await db.fetch_all("list_cron_runs")}
    leases_now = await database_now(db)  # leases expire by the database's clock
    specs = crons.specs if crons is not None else {}
    cron_rows = []
    for name in sorted(set(runs) | set(specs)):
        run = runs.get(name, {})
        started, finished = run.get("last_started_at"), run.get("last_finished_at")
        unfinished = started is not None and (finished is None or finished < started)
        expires = run.get("expires_at")
        spec = specs.get(name)
        cron_rows.append(
            {
                "name": name,
                "every_s": spec.interval_s if spec else None,
                "running": unfinished and expires is not None and expires > leases_now,
                "abandoned": unfinished and (expires is None or expires <= leases_now),
                **{
                    k: run.get(k)
                    for k in (
                        "last_started_at",
                        "last_finished_at",
                        "last_outcome",
                        "last_error",
                        "breaker_opened_at",
                        "holder",
                    )
                },
            }
        )

    return StatusContext(
        now=now,
        workspaces=list(workspaces.values()),
        jobs=[{"type": t, **counts} for t, counts in sorted(jobs.items())],
        dedupe_hits=dedupe,
        crons=cron_rows,
        alerts=alerts,
        unknown_notifications=await unknown_notifications(db, limit=20),
        packs=await db.fetch_all("recent_context_packs", limit=10),
        quarantine=await pending_deliveries(db, limit=20),
    )


ROUTES = [
    Route("/status", status_page, methods=["GET"]),
    Route("/status/login", login, methods=["GET", "POST"]),
    Route("/status/logout", logout, methods=["POST"]),
]

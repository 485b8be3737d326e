"""The operator console's door: sign-in, the session, CSRF, and how a console page is sent
(server-rendered with Jinja2).  The overview is ``gateway.overview``; the lists and detail views
``gateway.console``; the actions ``gateway.console_actions``.

Who may see it: a request with ``Authorization: Bearer <the admin token>``, or a browser holding
the session cookie that the login form (``POST /status/login``) or the sign-in URL
(``GET /status/login?token=…``, printed by a first ``hookgate serve`` on the embedded default)
sets after checking the same token in constant time (``gateway.admin_token``).  The cookie holds
a random session id, signed with itsdangerous (keyed by ``AdminToken.session_key``: a changed
token signs every browser out); it is HttpOnly, SameSite=Strict, limited to ``/status`` and
valid for ``SESSION_MAX_AGE_S``.  Anyone else gets the login form and nothing else.

Every form a signed-in browser posts carries the session's CSRF token (an HMAC of its session id
under the session key) in a hidden ``csrf`` field, checked in constant time before anything
acts; a bearer request carries no cookie a third-party page could ride on, so it needs none.
Every page is served with a Content-Security-Policy that allows no script and no resource from
anywhere else, and no framing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from gateway.admin import require_admin
from gateway.admin_token import AdminToken
from gateway.webhooks import RETRY_AFTER_S
from sql import DatabaseUnavailable

COOKIE = "hookgate_status"
NOTICE_COOKIE = "hookgate_notice"
NOTICE_MAX_AGE_S = 60
SESSION_MAX_AGE_S = 12 * 3600
ALERT_DAYS = 7
DEFAULT_WINDOW = "24h"
JOB_STATUSES = ("pending", "running", "succeeded", "dead")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _choices(values: Iterable[str]) -> list[tuple[str, str]]:
    """A filter's options when each value is its own label."""
    return [(value, value) for value in values]


templates.env.filters["when"] = _when
templates.env.filters["choices"] = _choices


@dataclasses.dataclass(frozen=True, slots=True)
class Operator:
    """Who is using the console: ``actor`` names them in the audit log (``bearer``, or
    ``session:`` and a digest of the session id, never the id itself); ``csrf`` is the token
    their forms carry (None for a bearer request, which needs none)."""

    actor: str
    csrf: str | None

    def form_ok(self, form: Mapping[str, Any]) -> bool:
        if self.csrf is None:
            return True
        presented = str(form.get("csrf") or "")
        return hmac.compare_digest(presented.encode(), self.csrf.encode())


def _serializer(admin_token: AdminToken) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(admin_token.session_key, salt="hookgate-status-session")


def _csrf_token(admin_token: AdminToken, session_id: str) -> str:
    key = admin_token.session_key.encode()
    return hmac.new(key, b"csrf:" + session_id.encode(), "sha256").hexdigest()


def _operator(request: Request, admin_token: AdminToken) -> Operator | None:
    """The bearer, or the browser whose session cookie is valid; None for anyone else."""
    if require_admin(request) is None:
        return Operator("bearer", None)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        session = _serializer(admin_token).loads(cookie, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return None
    session_id = session.get("sid") if isinstance(session, dict) else None
    if not isinstance(session_id, str):
        return None
    digest = hashlib.sha256(session_id.encode()).hexdigest()[:12]
    return Operator(f"session:{digest}", _csrf_token(admin_token, session_id))


def signed_in(request: Request) -> Operator | Response:
    """The operator, or the answer for someone who is not one: 404 while the console is off,
    else the login form (401)."""
    admin_token: AdminToken | None = request.app.state.admin_token
    if admin_token is None:
        return _off()
    found = _operator(request, admin_token)
    return _login(request, 401) if found is None else found


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    operator: Operator | None = None,
    status_code: int = 200,
) -> Response:
    """A console page, with the operator's CSRF token for its forms, the notice the last action
    left (``flash``), and the security headers."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = templates.TemplateResponse(
        request,
        template,
        {
            **context,
            "csrf": operator.csrf if operator else None,
            "here": here,
            "notice": _read_notice(request),
        },
        status_code=status_code,
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )
    if NOTICE_COOKIE in request.cookies:
        response.delete_cookie(NOTICE_COOKIE, path="/status")
    return response


def _notice_serializer(admin_token: AdminToken) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(admin_token.session_key, salt="hookgate-status-notice")


def flash(request: Request, response: Response, text: str, *, ok: bool) -> None:
    """Leave ``text`` for the next page this browser opens (a short-lived signed cookie)."""
    admin_token: AdminToken = request.app.state.admin_token  # an operator acted: it is set
    response.set_cookie(
        NOTICE_COOKIE,
        _notice_serializer(admin_token).dumps({"text": text, "ok": ok}),
        max_age=NOTICE_MAX_AGE_S,
        path="/status",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _read_notice(request: Request) -> dict[str, Any] | None:
    cookie = request.cookies.get(NOTICE_COOKIE)
    admin_token: AdminToken | None = request.app.state.admin_token
    if not cookie or admin_token is None:
        return None
    try:
        notice = _notice_serializer(admin_token).loads(cookie, max_age=NOTICE_MAX_AGE_S)
    except BadSignature:
        return None
    return notice if isinstance(notice, dict) else None


def _login(request: Request, status: int, error: str | None = None) -> Response:
    return render(request, "login.html", {"error": error}, status_code=status)


def _off() -> Response:
    return PlainTextResponse("the status page is off: HOOKGATE_ADMIN_TOKEN is unset", 404)


async def login(request: Request) -> Response:
    """The login form's ``POST``, and the sign-in URL's ``GET /status/login?token=…`` (what
    ``hookgate serve`` prints on a first run): a right token gets a new session."""
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
        _serializer(admin_token).dumps({"sid": secrets.token_urlsafe(18)}),
        max_age=SESSION_MAX_AGE_S,
        path="/status",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    operator = signed_in(request)
    if isinstance(operator, Response):
        return operator
    if not operator.form_ok(await request.form()):
        return forbidden(request, operator)
    response = RedirectResponse("/status", 303)
    response.delete_cookie(COOKIE, path="/status")
    return response


class BadFilter(ValueError):
    """A page's query parameter that is not one of its choices (answered 400)."""


Page = Callable[[Request, Operator], Awaitable[Response]]


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A console page's endpoint: the operator signed in, else the login form; a bad filter is
    a 400 page and a database that cannot be reached a 503 one (``Retry-After``)."""

    async def endpoint(request: Request) -> Response:
        operator = signed_in(request)
        if isinstance(operator, Response):
            return operator
        try:
            return await handler(request, operator)
        except BadFilter as exc:
            return error_page(request, operator, 400, "Bad filter", str(exc))
        except DatabaseUnavailable as exc:
            return unavailable(request, operator, exc)

    return endpoint


def unavailable(request: Request, operator: Operator, exc: DatabaseUnavailable) -> Response:
    message = f"The database cannot be reached ({exc}). Reload the page in a few seconds."
    response = error_page(request, operator, 503, "Database unavailable", message)
    response.headers["Retry-After"] = RETRY_AFTER_S
    return response


def error_page(
    request: Request, operator: Operator, status: int, title: str, message: str
) -> Response:
    return render(request, "error.html", {"title": title, "message": message}, operator, status)


def not_found(request: Request, operator: Operator, what: str, key: object) -> Response:
    return error_page(request, operator, 404, "Not found", f"There is no {what} {key}.")


def forbidden(request: Request, operator: Operator) -> Response:
    """A form without this session's CSRF token: it came from another page, or an old session."""
    message = (
        "This form was not sent from this session's console (it may be from before you signed "
        "in again, or from another site). Nothing was changed: reload the page and try again."
    )
    return error_page(request, operator, 403, "Refused", message)


ROUTES = [
    Route("/status/login", login, methods=["GET", "POST"]),
    Route("/status/logout", logout, methods=["POST"]),
]

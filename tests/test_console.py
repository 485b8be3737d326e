"""The operator console over HTTP, on both backends: who may see it, CSRF on every action, the
audit line each action leaves, the lists' filters and paging, bad filters and unknown ids.
(Clicking through it in a browser: ``test_console_browser.py``.)"""

from __future__ import annotations

import logging
import re

import httpx2
import pytest

from gateway import console_data
from gateway.app import create_app
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler import queue
from scheduler.runner import JobRunner
from sql import Database
from tests.conftest import AppClient, encode, make_settings, rows
from tests.console_support import email_reply, unreadable
from tests.tcp_proxy import TcpProxy

ADMIN = {"Authorization": "Bearer admin-test-token"}
PAGES = (
    "/status",
    "/status/messages",
    "/status/messages/1",
    "/status/jobs",
    "/status/jobs/1",
    "/status/quarantine",
    "/status/quarantine/1",
    "/status/alerts",
    "/status/workspaces",
)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, HOOKGATE_SCHEDULER="0")  # jobs run when a test says


async def deliver(client: AppClient, workspace: CreatedWorkspace, payload: object) -> int:
    answer = await client.http.post(client.url("emailbison", workspace), content=encode(payload))
    body = answer.json()
    return int(body.get("message_id") or body["delivery_id"])


async def dead_job(client: AppClient, workspace: CreatedWorkspace) -> int:
    """A job no handler exists for, run once: dead."""
    runtime = client.app.state.runtime
    job_id = await queue.enqueue(
        runtime.db,
        "CRM_EXPORT",
        "CRM_EXPORT:1",
        max_attempts=1,
        workspace_id=workspace.id,
    )
    assert job_id is not None
    async with JobRunner(runtime) as runner:
        await runner.run_until_idle(timeout_s=30)
    return job_id


async def sign_in(http: httpx2.AsyncClient) -> str:
    """Sign the client in; the CSRF token its pages carry."""
    answer = await http.post("/status/login", data={"token": "admin-test-token"})
    assert answer.status_code == 303 and "hookgate_status" in http.cookies
    page = await http.get("/status/jobs")
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found is not None
    return found.group(1)


async def test_every_page_wants_the_admin_token_or_a_session(
    client: AppClient, workspace: CreatedWorkspace
) -> None:
    await deliver(client, workspace, email_reply(1, "Hello"))
    await deliver(client, workspace, unreadable("x"))
    for path in PAGES:
        anonymous = await client.http.get(path)
        assert anonymous.status_code == 401 and 'name="token"' in anonymous.text, path
        assert "Acme Outbound" not in anonymous.text
        wrong = await client.http.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path
        shown = await client.http.get(path, headers=ADMIN)
        assert shown.status_code == 200, path
        policy = shown.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert not re.search(r"""(src|href)=["'](https?:)?//""", shown.text), (
            path
        )  # nothing fetched
    forged = await client.http.get("/status/jobs", headers={"Cookie": "hookgate_status=x.y.z"})
    assert forged.status_code == 401


async def test_the_console_is_off_without_an_admin_token(database_url: str, db: Database) -> None:
    app = create_app(make_settings(database_url, HOOKGATE_ADMIN_TOKEN="", HOOKGATE_SCHEDULER="0"))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            for path in PAGES:
                assert (await http.get(path)).status_code == 404
            assert (await http.post("/status/jobs/1/retry")).status_code == 404


async def test_an_action_needs_its_sessions_csrf_token_and_is_audited(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = await dead_job(client, workspace)
    csrf = await sign_in(client.http)
    caplog.set_level(logging.INFO, "hookgate.audit")

    missing = await client.http.post(f"/status/jobs/{job_id}/retry")
    wrong = await client.http.post(f"/status/jobs/{job_id}/retry", data={"csrf": "0" * 64})
    assert missing.status_code == wrong.status_code == 403
    assert "Nothing was changed" in wrong.text
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=client.app), base_url="http://t"
    ) as other:
        others = await sign_in(other)  # another browser's session has its own token
        assert others != csrf
    stolen = await client.http.post(f"/status/jobs/{job_id}/retry", data={"csrf": others})
    assert stolen.status_code == 403
    [job] = await rows(settings.database_url, "SELECT status FROM background_jobs")
    assert job["status"] == "dead"

    retried = await client.http.post(
        f"/status/jobs/{job_id}/retry", data={"csrf": csrf, "next": "/status/jobs?status=dead"}
    )
    assert retried.status_code == 303 and retried.headers["location"] == "/status/jobs?status=dead"
    [job] = await rows(settings.database_url, "SELECT status, attempts FROM background_jobs")
    assert job == {"status": "pending", "attempts": 0}
    after = await client.http.get(retried.headers["location"])
    assert f"Job {job_id} is pending again, due now." in after.text
    again = await client.http.get(retried.headers["location"])
    assert "pending again" not in again.text  # the notice shows once

    audit = [r for r in caplog.records if r.name == "hookgate.audit"]
    assert [(r.action, r.target_id, r.outcome) for r in audit] == [
        ("job.retry", job_id, "refused: no valid CSRF token"),
        ("job.retry", job_id, "refused: no valid CSRF token"),
        ("job.retry", job_id, "refused: no valid CSRF token"),
        ("job.retry", job_id, "retried"),
    ]
    assert all(r.actor.startswith("session:") for r in audit)
    assert csrf not in caplog.text and "admin-test-token" not in caplog.text


async def test_bearer_requests_act_without_csrf_and_refusals_say_why(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_id = await dead_job(client, workspace)
    delivery_id = await deliver(client, workspace, unreadable("x"))
    caplog.set_level(logging.INFO, "hookgate.audit")

    outside = await client.http.post(
        f"/status/jobs/{job_id}/retry", headers=ADMIN, data={"next": "https://evil.example/x"}
    )
    assert outside.status_code == 303 and outside.headers["location"] == f"/status/jobs/{job_id}"
    twice = await client.http.post(f"/status/jobs/{job_id}/retry", headers=ADMIN)
    assert twice.status_code == 303  # pending: retry makes it due now, still pending
    discarded = await client.http.post(f"/status/quarantine/{delivery_id}/discard", headers=ADMIN)
    assert discarded.status_code == 303
    refused = await client.http.post(f"/status/quarantine/{delivery_id}/discard", headers=ADMIN)
    page = await client.http.get(refused.headers["location"], headers=ADMIN)
    assert f"Delivery {delivery_id} is discarded: only a pending one can be discarded." in page.text
    alert = await client.http.post("/status/alerts/1/resend", headers=ADMIN)  # its quarantine alert
    page = await client.http.get(alert.headers["location"], headers=ADMIN)
    assert "Not re-sent: alert 1 has no unknown outcome: it is due or being sent." in page.text
    for path in (
        "/status/alerts/99/resend",
        "/status/messages/99/resend-notification",
        "/status/jobs/99/retry",
        "/status/quarantine/99/replay",
        "/status/quarantine/99/discard",
        "/status/workspaces/ws_none/context-packs",
    ):
        missing = await client.http.post(path, headers=ADMIN)
        assert missing.status_code == 404 and "There is no" in missing.text, path
    outcomes = [r.outcome for r in caplog.records if r.name == "hookgate.audit"]
    assert outcomes == [
        "retried",
        "retried",
        "discarded",
        "not discarded: discarded",
        "refused: alert 1 has no unknown outcome: it is due or being sent",
        "not found",
        "not found",
        "not found",
        "not found",
        "not found",
        "not found",
    ]
    assert {r.actor for r in caplog.records if r.name == "hookgate.audit"} == {"bearer"}


async def test_lists_filter_and_page_on_both_backends(
    client: AppClient,
    workspace: CreatedWorkspace,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    globex = await create_workspace(db, "Globex Sales", WorkspaceOptions())
    ids = [await deliver(client, workspace, email_reply(n, f"reply {n}")) for n in range(1, 6)]
    globex_id = await deliver(client, globex, email_reply(9, "from globex"))
    monkeypatch.setattr(console_data, "PAGE_SIZE", 3)

    first = await client.http.get("/status/messages", headers=ADMIN)
    shown = [int(i) for i in re.findall(r'data-message="(\d+)"', first.text)]
    assert shown == [globex_id, ids[4], ids[3]]
    older = re.search(r'href="/status/messages\?(before=\d+)"', first.text)
    assert older is not None
    second = await client.http.get(f"/status/messages?{older.group(1)}", headers=ADMIN)
    assert [int(i) for i in re.findall(r'data-message="(\d+)"', second.text)] == ids[2::-1]

    only = await client.http.get(f"/status/messages?workspace={globex.id}", headers=ADMIN)
    assert re.findall(r'data-message="(\d+)"', only.text) == [str(globex_id)]
    inbound = await client.http.get("/status/messages?direction=outbound", headers=ADMIN)
    assert re.findall(r'data-message="(\d+)"', inbound.text) == []

    jobs = await client.http.get(
        f"/status/jobs?workspace={globex.id}&status=pending", headers=ADMIN
    )
    assert re.findall(r'data-job="\d+" data-status="(\w+)"', jobs.text) == ["pending"]
    for bad, error in (
        ("/status/jobs?status=lost", "status must be one of pending, running, succeeded, dead"),
        ("/status/messages?provider=fax", "provider must be one of emailbison"),
        ("/status/messages?workspace=ws_nope", "workspace must be one of"),
        ("/status/messages?lead=-1", "lead must be a whole number from 0 to"),
        ("/status/jobs?before=1%C2%B2", "before must be a whole number from 0 to"),
        ("/status/messages?before=10000000000000000000", "before must be a whole number"),
        ("/status/quarantine?status=lost", "status must be one of pending, replayed, discarded"),
    ):
        answer = await client.http.get(bad, headers=ADMIN)
        assert answer.status_code == 400 and error in answer.text, bad
    for missing in (
        "/status/messages/999",
        "/status/jobs/999",
        "/status/quarantine/999",
        "/status/jobs/99999999999999999999",  # past a 64-bit id: no such route, not a 500
    ):
        assert (await client.http.get(missing, headers=ADMIN)).status_code == 404, missing
    too_long = await client.http.post("/status/jobs/99999999999999999999/retry", headers=ADMIN)
    assert too_long.status_code == 404


async def test_a_database_that_cannot_be_reached_is_a_503_page_then_recovers(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.start()
    settings = make_settings(
        proxy.url(postgres_url), DATABASE_TIMEOUT_S="1", HOOKGATE_SCHEDULER="0"
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/status/jobs", headers=ADMIN)).status_code == 200
                await proxy.cut()
                caplog.set_level(logging.INFO, "hookgate.audit")
                for path in ("/status", "/status/jobs", "/status/messages/1", "/status/alerts"):
                    gone = await http.get(path, headers=ADMIN)
                    assert gone.status_code == 503, path
                    assert gone.headers["retry-after"] and "Database unavailable" in gone.text
                retry = await http.post("/status/jobs/1/retry", headers=ADMIN)
                assert retry.status_code == 503
                [line] = [r for r in caplog.records if r.name == "hookgate.audit"]
                assert line.outcome.startswith("failed: database unavailable")
                await proxy.restore()
                assert (await http.get("/status/jobs", headers=ADMIN)).status_code == 200
    finally:
        await proxy.close()

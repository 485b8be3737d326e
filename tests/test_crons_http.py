"""POST /cron/{name}: the secret is checked before the database; a running cron answers 409; and
the lease: one holder at a time, lost when it expires by the database's clock, whatever the
replicas' clocks say."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx2
import pytest

from gateway.api import create_context_pack
from gateway.app import create_app
from gateway.events import Lead
from gateway.ingest_store import upsert_leads
from gateway.overview import collect
from gateway.runtime import Runtime
from gateway.workspaces import WorkspaceOptions, create_workspace
from scheduler.crons import CronBusy, CronResult, CronService, CronSpec
from sql import Database
from tests.conftest import rows
from tests.crons_support import START, cron_runtime, cron_settings
from tests.fakes import FakeServer, Reply, chat_completion
from tests.jobs_support import make_runtime, skewed, time_passes
from tests.tcp_proxy import TcpProxy

SECRET = {"Authorization": "Bearer cron-test-secret"}


async def test_a_wrong_or_missing_cron_secret_is_refused_without_a_database(
    postgres_url: str,
) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    app = create_app(cron_settings(proxy.url(postgres_url), DATABASE_TIMEOUT_S="1"))
    try:
        async with app.router.lifespan_context(app):
            await proxy.cut()  # from here on the database is unreachable
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
                refused = [
                    await http.post("/cron/context_packs"),
                    await http.post("/cron/context_packs", headers={"Authorization": "Bearer x"}),
                    await http.post(
                        "/cron/unipile_health",
                        headers={"Authorization": "Bearer cron-test-secretX"},
                    ),
                    await http.post("/cron/nope", headers={"Authorization": "cron-test-secret"}),
                    await http.post("/cron/context_packs?token=cron-test-secret"),
                ]
                accepted = await http.post("/cron/context_packs", headers=SECRET)
    finally:
        await proxy.close()
    assert [r.status_code for r in refused] == [401] * 5
    assert all(r.json() == {"success": False, "error": "unauthorized"} for r in refused)
    # The right secret goes on to the database, which is unreachable: the 401s never got there.
    assert accepted.status_code == 503 and accepted.json()["retryable"] is True


async def test_cron_secret_unset_turns_manual_runs_off(database_url: str, db: Database) -> None:
    app = create_app(cron_settings(database_url, CRON_SECRET=""))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.post("/cron/context_packs", headers={"Authorization": "Bearer "})
    assert answer.status_code == 401


async def test_a_running_cron_answers_409_here_and_on_another_replica(
    database_url: str, db: Database, fake_openai: FakeServer
) -> None:
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    async with db.transaction() as conn:
        await upsert_leads(conn, [(workspace.id, Lead(email="a@example.com"), START)])
    await create_context_pack(db, workspace.id, START)
    fake_openai.script(
        "POST", "/v1/chat/completions", Reply(json=chat_completion("ok"), delay_s=1.0)
    )
    settings = cron_settings(database_url, openai=fake_openai)
    app = create_app(settings)
    async with app.router.lifespan_context(app), cron_runtime(settings) as other_runtime:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            first = asyncio.create_task(http.post("/cron/context_packs", headers=SECRET))
            await fake_openai.wait_for_requests(1)
            busy = await http.post("/cron/context_packs", headers=SECRET)
            other = CronService(other_runtime, holder="replica-2")
            try:
                await other.run_now("context_packs")
                raise AssertionError("another replica ran a cron that was running")
            except CronBusy:
                pass
            done = await first
            unknown = await http.post("/cron/nope", headers=SECRET)
            health = await http.post("/cron/unipile_health", headers=SECRET)
    assert busy.status_code == 409
    assert done.status_code == 200 and done.json()["outcome"] == "ok"
    assert done.json()["detail"]["leads_done"] == 1
    assert unknown.status_code == 404
    assert health.status_code == 200 and health.json()["outcome"] == "skipped"  # Unipile is off
    [lease] = await rows(database_url, "SELECT * FROM cron_leases WHERE name = 'context_packs'")
    assert lease["last_outcome"] == "ok" and lease["last_finished_at"] >= lease["last_started_at"]


async def test_the_lease_passes_on_only_when_it_expires(database_url: str, db: Database) -> None:
    settings = cron_settings(database_url)  # AI and Unipile off: runs are quick "skipped"
    async with cron_runtime(settings) as runtime:
        # A holder that took the lease and died: it never finishes or renews.
        await runtime.db.fetch_one(
            "take_cron_lease",
            name="unipile_health",
            holder="dead-replica",
            lease_s=810.0,
            manual=False,
        )
        alive = CronService(runtime, holder="alive-replica")
        assert await alive.tick("unipile_health") is None
        await time_passes(database_url, 600)
        assert await alive.tick("unipile_health") is None
        await time_passes(database_url, 300)
        run = await alive.tick("unipile_health")
        assert run is not None and run.outcome == "skipped"
        # A scheduled tick keeps the lease until 90% of the interval has passed.
        assert (run.expires_at - run.started_at).total_seconds() == pytest.approx(810, abs=0.1)
        other = CronService(runtime, holder="third-replica")
        assert await other.tick("unipile_health") is None
        manual = await other.run_now("unipile_health")  # a finished run does not block a manual one
        assert manual.outcome == "skipped" and manual.expires_at == manual.finished_at
    [lease] = await rows(database_url, "SELECT * FROM cron_leases")
    assert lease["holder"] == "third-replica" and lease["last_outcome"] == "skipped"


@pytest.mark.parametrize("first_skew_s", [-30, 30])
async def test_a_replica_whose_clock_is_off_never_runs_a_finished_tick_again(
    database_url: str, db: Database, first_skew_s: int
) -> None:
    runs: list[str] = []

    def counted(replica: str) -> CronSpec:
        async def run(runtime: Runtime) -> CronResult:
            runs.append(replica)
            return CronResult()

        return CronSpec("probe", 50, 10, run)  # a tick holds its lease for 45 s

    settings = cron_settings(database_url)
    first = CronService(
        make_runtime(db, settings, skewed(first_skew_s)), [counted("first")], holder="first"
    )
    second = CronService(
        make_runtime(db, settings, skewed(-first_skew_s)), [counted("second")], holder="second"
    )
    done = await first.tick("probe")
    assert done is not None and done.outcome == "ok"
    assert await second.tick("probe") is None  # 60 s apart, and still the same tick
    await time_passes(database_url, 40)
    assert await second.tick("probe") is None
    await time_passes(database_url, 6)  # the hold is over: the next tick is anyone's
    assert await second.tick("probe") is not None
    assert runs == ["first", "second"]


async def test_the_status_page_judges_a_running_cron_by_the_database_clock(
    database_url: str, db: Database
) -> None:
    await db.fetch_one(
        "take_cron_lease", name="unipile_health", holder="busy-replica", lease_s=60.0, manual=False
    )
    runtime = make_runtime(db, cron_settings(database_url), skewed(120))
    context = await collect(runtime, CronService(runtime))
    [health] = [c for c in context.crons if c["name"] == "unipile_health"]
    assert (health["running"], health["abandoned"]) == (True, False)

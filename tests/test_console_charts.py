"""The console's chart figures on both backends: each time falls in its own bucket (the dialects
bucket differently), a range leaves older rows out, AI calls are attributed to their job type,
queue depth is sampled once a minute across replicas, and the overview draws every chart as
server-side SVG with its totals in words."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from gateway import console_data
from gateway.charts import WINDOWS, Figure, draw, fold
from gateway.delivery_stats import DeliveryStats
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from scheduler import queue
from scheduler.queue_samples import sample_queue_depth
from sql import Database, database_now
from tests.conftest import AppClient, make_settings, rows

ADMIN = {"Authorization": "Bearer admin-test-token"}
CHARTS = (
    "deliveries",
    "ack-latency",
    "queue-depth",
    "dead-jobs",
    "ai-calls",
    "ai-tokens",
    "ai-latency",
    "alerts",
)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, HOOKGATE_SCHEDULER="0")


async def ai_call(db: Database, source: str, at: dt.datetime, tokens: int, ms: int) -> None:
    await db.execute(
        "insert_ai_interaction",
        workspace_id=None,
        source=source,
        model="gpt-4o-mini",
        purpose="sentiment",
        prompt_tokens=tokens,
        completion_tokens=None,
        latency_ms=ms,
        status="ok",
        error=None,
        now=at,
    )


def by_name(figures: list[Figure]) -> dict[str, Figure]:
    return {figure.key: figure for figure in figures}


async def test_each_time_falls_in_its_bucket_and_the_range_leaves_older_rows_out(
    db: Database,
) -> None:
    now = await database_now(db)
    hour = WINDOWS["1h"]
    minute_start = now.replace(second=0, microsecond=0)
    await ai_call(db, "background_job:EMAIL_INBOUND_POST_PROCESS", minute_start, 100, 40)
    await ai_call(db, "background_job:EMAIL_INBOUND_POST_PROCESS", minute_start, 50, 80)
    await ai_call(db, "cron:context_packs", minute_start - dt.timedelta(seconds=1), 7, 10)
    await ai_call(db, "route:/api/drafts/1/send", now - dt.timedelta(minutes=59), 1, 5)
    await ai_call(db, "cron:context_packs", now - dt.timedelta(minutes=61), 1000, 5)

    figures = by_name(await console_data.chart_figures(db, hour, now))
    calls = figures["ai-calls"].series
    assert set(calls) == {
        "EMAIL_INBOUND_POST_PROCESS",
        "cron:context_packs",
        "route:/api/drafts/1/send",
    }
    assert len(calls["cron:context_packs"]) == 60
    assert calls["EMAIL_INBOUND_POST_PROCESS"][-1] == 2  # the current minute
    assert calls["cron:context_packs"][-2:] == [1, 0]  # a second before it: the minute before
    assert sum(v or 0 for v in calls["cron:context_packs"]) == 1  # 61 minutes ago: out of range
    assert figures["ai-tokens"].series["EMAIL_INBOUND_POST_PROCESS"][-1] == 150
    latency = figures["ai-latency"].series["EMAIL_INBOUND_POST_PROCESS"]
    assert latency[-1] == 60 and latency[-2] is None  # a mean, and a gap where there was no call
    assert (
        "EMAIL_INBOUND_POST_PROCESS",
        "2",
        figures["ai-calls"].colors_by_name["EMAIL_INBOUND_POST_PROCESS"],
    ) in figures["ai-calls"].totals

    day = by_name(await console_data.chart_figures(db, WINDOWS["24h"], now))
    assert sum(v or 0 for v in day["ai-calls"].series["cron:context_packs"]) == 2
    assert len(day["ai-calls"].series["cron:context_packs"]) == 96


async def test_queue_depth_is_sampled_once_a_minute_whoever_samples_it(
    db: Database, settings: Settings
) -> None:
    for n in range(3):
        await queue.enqueue(db, "EMAIL_INBOUND_POST_PROCESS", f"E:{n}", max_attempts=3)
    await queue.enqueue(db, "DRAFT_SEND", "D:1", max_attempts=3)
    await sample_queue_depth(db)
    await queue.enqueue(db, "DRAFT_SEND", "D:2", max_attempts=3)
    await sample_queue_depth(db)  # another replica, the same minute: the first sample stands
    query = "SELECT minute, type, pending, running FROM job_queue_samples ORDER BY minute, type"
    samples = await rows(settings.database_url, query)
    first = [
        (s["type"], s["pending"], s["running"])
        for s in samples
        if s["minute"] == samples[0]["minute"]
    ]
    assert first == [("DRAFT_SEND", 1, 0), ("EMAIL_INBOUND_POST_PROCESS", 3, 0)]
    assert len(samples) in (2, 4)  # 4 only if the minute turned between the two samples
    figures = by_name(await console_data.chart_figures(db, WINDOWS["1h"], await database_now(db)))
    assert max(figures["queue-depth"].series["EMAIL_INBOUND_POST_PROCESS"]) == 3

    old = "UPDATE job_queue_samples SET minute = minute - INTERVAL '9 days'"
    if settings.database_url.startswith("sqlite"):
        old = "UPDATE job_queue_samples SET minute = datetime(minute, '-9 days')"
    await rows(settings.database_url, old)
    await sample_queue_depth(db)  # drops samples older than the longest range
    kept = await rows(settings.database_url, "SELECT minute FROM job_queue_samples")
    assert len(kept) == 2  # this minute's, written anew


def test_more_series_than_fit_are_folded_into_other() -> None:
    series = {f"T{n}": [float(n), 1.0] for n in range(9)}
    folded = fold(series, limit=4)
    assert list(folded) == ["T8", "T7", "T6", "other"]
    assert folded["other"] == [sum(range(6)), 6.0]


async def test_the_overview_draws_every_chart_as_svg_with_its_totals(
    client: AppClient, workspace: CreatedWorkspace, db: Database
) -> None:
    now = await database_now(db)
    await ai_call(db, "background_job:SMS_INBOUND_POST_PROCESS", now, 12, 30)
    page = await client.http.get("/status?range=1h", headers=ADMIN)
    assert page.status_code == 200
    for key in CHARTS:
        section = re.search(
            rf'<section class="chart" id="chart-{key}">(.*?)</section>', page.text, re.S
        )
        assert section is not None and "<svg" in section.group(1), key
    assert re.search(r"<b>1</b> SMS_INBOUND_POST_PROCESS", page.text)
    assert re.search(r"<b>12</b> SMS_INBOUND_POST_PROCESS", page.text)
    for key in WINDOWS:
        assert (await client.http.get(f"/status?range={key}", headers=ADMIN)).status_code == 200
    bad = await client.http.get("/status?range=1y", headers=ADMIN)
    assert bad.status_code == 400 and "range must be one of 1h, 24h, 7d" in bad.text
    narrowed = await client.http.get("/status?range=7d&provider=ghl", headers=ADMIN)
    assert (
        narrowed.status_code == 200 and 'href="/status?range=1h&amp;provider=ghl"' in narrowed.text
    )
    bad = await client.http.get("/status?provider=fax", headers=ADMIN)
    assert bad.status_code == 400 and "provider must be one of emailbison, ghl" in bad.text


def test_an_empty_range_says_so() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    svg = draw(Figure("x", "X", "bars", "jobs", {}), WINDOWS["1h"], now)
    assert "no data in this range" in svg and "<script src" not in svg


async def test_deliveries_and_their_ack_latency_by_bucket_provider_and_range(db: Database) -> None:
    """Deliveries recorded this minute and two minutes ago (on the database's clock) come back in
    their buckets by outcome, with p50 and p99 from the latency buckets; ``provider`` narrows
    both charts; the 24-hour range sums the minutes of a quarter hour."""
    now = await database_now(db)
    clock = now.timestamp()
    stats = DeliveryStats(clock=lambda: clock)
    for n in range(98):
        stats.record("emailbison", "stored", 0.003 + n * 0.00001)  # the (2, 5] ms bucket
    stats.record("emailbison", "deduped", 0.04)  # (20, 50]
    stats.record("ghl", "rejected", 0.4)  # (200, 500]
    clock -= 120
    for _ in range(3):
        stats.record("unipile", "unavailable", 0.0015)  # (1, 2]
    assert await stats.flush(db)

    figures = by_name(await console_data.chart_figures(db, WINDOWS["1h"], now))
    deliveries = figures["deliveries"].series
    assert list(deliveries) == ["stored", "deduped", "rejected", "unavailable"]  # outcome order
    assert [deliveries[o][-1] for o in deliveries] == [98, 1, 1, 0]
    assert deliveries["unavailable"][-3] == 3
    latency = figures["ack-latency"].series
    assert latency["p50"][-1] == pytest.approx(2 + 3 * 50 / 98)  # within (2, 5]
    assert latency["p99"][-1] == pytest.approx(50)  # the 99th of 100: the deduped one, ≤ 50
    assert latency["p50"][-3] == pytest.approx(1.5) and latency["p50"][-2] is None
    assert "Estimated within latency buckets of 1, 2, 5" in figures["ack-latency"].note
    assert ("stored", "98", "#2f9e61") in figures["deliveries"].totals

    ghl = by_name(await console_data.chart_figures(db, WINDOWS["1h"], now, "ghl"))
    assert {name: sum(values) for name, values in ghl["deliveries"].series.items()} == {
        "rejected": 1
    }
    assert ghl["ack-latency"].series["p50"][-1] == pytest.approx(350)

    day = by_name(await console_data.chart_figures(db, WINDOWS["24h"], now))
    assert len(day["deliveries"].series["stored"]) == 96
    assert sum(day["deliveries"].series["unavailable"]) == 3
    totals = await console_data.delivery_totals(db, WINDOWS["1h"].since(now))
    assert totals[0] == {"provider": "emailbison", "total": 99, "stored": 98, "deduped": 1}
    assert [t["provider"] for t in totals] == ["emailbison", "unipile", "ghl"]

"""The invariants the randomized fault test (tests/test_fault_random.py) checks once everything
has settled, each a function that lists what broke it (an empty list: it held).  They read the
tables straight through the driver and compare them with what the provider was answered and what
the fake services saw: a job's handlers are counted at the fakes, never trusted from the
database.
"""

from __future__ import annotations

import collections
from typing import Any

import asyncpg

from tests.fault_plan import MAY_HAVE_POSTED, TOKEN, UNREADABLE, Plan
from tests.fault_support import Fakes, Provider


def stored_once(provider: Provider, messages: list[asyncpg.Record]) -> list[str]:
    """Invariant 1."""
    problems = []
    by_key: dict[tuple[str, str, str], list[int]] = collections.defaultdict(list)
    for m in messages:
        for column in ("email_bison_reply_id", "inboxxia_scheduled_email_id"):
            if m[column] is not None:
                by_key[(m["workspace_id"], column, m[column])].append(m["id"])
    ids = {id_ for stored in by_key.values() for id_ in stored}
    workspaces = provider.workspaces
    quarantined: dict[bytes, set[int]] = collections.defaultdict(set)
    for copy in provider.delivered:
        post = copy.post
        assert post is not None
        what = f"{post.event} {post.key or '(unreadable)'} at {post.at:.1f} s"
        if unexpected := set(copy.statuses) - {0, 200, 202, 503}:
            problems.append(f"{what}: answered {sorted(unexpected)} (answers {copy.statuses})")
        answer = copy.body or {}
        if not post.key_column:
            if copy.status != 202 or not answer.get("quarantined"):
                problems.append(f"{what}: not quarantined: {copy.statuses} {answer}")
            else:
                quarantined[post.body].add(int(answer["delivery_id"]))
            continue
        if copy.status != 200:
            problems.append(f"{what}: never answered 200 (answers {copy.statuses})")
            continue
        stored = by_key[(workspaces[post.workspace].id, post.key_column, post.key)]
        if len(stored) != 1:
            problems.append(f"{what}: answered 200 and stored {len(stored)} times")
        elif post.event in ("LEAD_REPLIED", "LEAD_INTERESTED") and (
            answer.get("message_id") not in ids
        ):
            problems.append(f"{what}: answered with message {answer} that is not stored")
    for body, delivery_ids in quarantined.items():
        if len(delivery_ids) != 1:
            problems.append(f"unreadable {body[:60]!r}: kept as {sorted(delivery_ids)}")
    if len(quarantined) != UNREADABLE:
        problems.append(f"{len(quarantined)} unreadable deliveries kept, {UNREADABLE} posted")
    return problems


def one_job_each(inbound: list[asyncpg.Record], strays: list[asyncpg.Record]) -> list[str]:
    """Invariant 2 (``inbound``: each inbound message with its post-process jobs; ``strays``:
    post-process jobs of no inbound message)."""
    problems = [f"post-process job {r['id']} of message {r['message_id']}" for r in strays]
    for m in inbound:
        what = f"message {m['id']}"
        if len(m["job_statuses"]) != 1:
            problems.append(f"{what}: {len(m['job_statuses'])} post-process jobs")
        elif m["job_status"] == "dead" and not (m["job_error"] or "").strip():
            problems.append(f"{what}: its job is dead without an error")
        elif m["job_status"] not in ("succeeded", "dead"):
            problems.append(f"{what}: its job ended {m['job_status']}")
    return problems


def one_handler_at_once(fakes: Fakes) -> list[str]:
    """Invariant 3, from what the fakes saw."""
    problems = [f"AI: {n} calls at once for {t}" for t, n in fakes.ai_gauge.overlapping().items()]
    problems += [
        f"Slack: {n} posts at once for {k}" for k, n in fakes.slack_gauge.overlapping().items()
    ]
    problems += [
        f"EmailBison: {n} sends at once of reply {r}"
        for r, n in fakes.send_gauge.overlapping().items()
    ]
    problems += [f"EmailBison: reply {r} sent {n} times" for r, n in fakes.sends.items() if n > 1]
    return problems + [f"a fake could not place {what}" for what in fakes.unrecognised]


def drafts_sent_once(
    plan: Plan, provider: Provider, fakes: Fakes, drafts: list[asyncpg.Record]
) -> list[str]:
    """Invariants 1 and 3 for drafts: one message per draft however often send was pressed,
    at most one provider call, and a send recorded as what happened."""
    problems = []
    for draft in drafts:
        reply = plan.by_reply_id(draft["inbound_reply_id"])
        sends = fakes.sends[reply.reply_id]
        what = f"draft {draft['id']} ({reply.token})"
        presses = provider.presses.get(draft["id"], [])
        if not presses:
            if sends or draft["message_ids"]:
                problems.append(
                    f"{what}: never pressed, yet {sends} sends, messages {draft['message_ids']}"
                )
            continue
        answered = {(p.status, (p.body or {}).get("message_id")) for p in presses}
        if len(answered) != 1 or next(iter(answered))[0] != 202:
            problems.append(f"{what}: presses answered {sorted(answered, key=str)}")
        if len(draft["message_ids"]) != 1:
            problems.append(f"{what}: {len(draft['message_ids'])} messages")
        if draft["status"] == "sent":
            if sends != 1 or draft["sent_ids"] != [reply.sent_id]:
                problems.append(f"{what}: sent, with {sends} sends and ids {draft['sent_ids']}")
        elif draft["status"] != "send_unknown" and draft["job_status"] != "dead":
            problems.append(f"{what}: {draft['status']}, its job {draft['job_status']}")
    return problems


def slack_posts_by_key(fakes: Fakes) -> dict[str, list[str]]:
    posts: dict[str, list[str]] = collections.defaultdict(list)
    for post in fakes.slack_posts:
        posts[post.key].append(post.outcome)
    return posts


def alerts_once(fakes: Fakes, alerts: list[asyncpg.Record]) -> list[str]:
    """Invariant 4."""
    problems = []
    rows: dict[str, list[asyncpg.Record]] = collections.defaultdict(list)
    for alert in alerts:
        rows[f"{alert['kind']}:{alert['workspace_id']}"].append(alert)
    posts = slack_posts_by_key(fakes)
    for key in sorted({*rows, *(k for k in posts if not TOKEN.fullmatch(k))}):
        outcomes = posts.get(key, [])
        posted = [o for o in outcomes if o in MAY_HAVE_POSTED]
        days = rows.get(key, [])
        if len(posted) > len(days):
            problems.append(f"alert {key}: {len(posted)} posts ({outcomes}) for {len(days)} days")
        recorded = sorted(str(row["outcome"]) for row in days)
        if posted and recorded == ["None"]:
            problems.append(f"alert {key}: posted ({outcomes}), no outcome recorded")
        if "sent" in recorded and len(days) == 1 and posted != ["ok"]:
            problems.append(f"alert {key}: recorded sent, Slack saw {outcomes}")
    return problems


def interested_notified_once(fakes: Fakes, inbound: list[asyncpg.Record]) -> tuple[list[str], int]:
    """Invariant 5; also how many interested messages were never notified because their job
    is dead."""
    problems = []
    dead = 0
    posts = slack_posts_by_key(fakes)
    for m in inbound:
        token = TOKEN.search(m["body"] or "")
        if token is None:
            problems.append(f"message {m['id']} has no token")
            continue
        outcomes = posts.get(token.group(), [])
        posted = [o for o in outcomes if o in MAY_HAVE_POSTED]
        what = f"message {m['id']} ({token.group()})"
        if not (m["interested"] or m["sentiment"] == "interested"):
            if outcomes:
                problems.append(f"{what}: not interested, yet notified {outcomes}")
            continue
        if len(posted) > 1:
            problems.append(f"{what}: notified {len(posted)} times ({outcomes})")
        elif m["notify_outcome"] == "sent" and posted != ["ok"]:
            problems.append(f"{what}: recorded sent, Slack saw {outcomes}")
        elif m["notify_outcome"] is None and "dead" in m["job_statuses"]:
            dead += 1
        elif m["notify_outcome"] is None:
            problems.append(
                f"{what}: interested, never notified ({outcomes}), job {m['job_status']}"
            )
    return problems, dead


async def check(
    plan: Plan, provider: Provider, fakes: Fakes, conn: asyncpg.Connection
) -> tuple[list[str], dict[str, Any]]:
    """Every invariant; the violations, and figures that say what the run went through."""
    messages = await conn.fetch("SELECT * FROM messages")
    post_process = "j.type LIKE '%\\_POST\\_PROCESS'"
    inbound = await conn.fetch(
        "SELECT m.id, m.body, m.interested, m.sentiment, m.notify_outcome, "
        "array_remove(array_agg(j.status), NULL) AS job_statuses, "
        "min(j.status) AS job_status, min(j.last_error) AS job_error "
        f"FROM messages m LEFT JOIN background_jobs j ON j.message_id = m.id AND {post_process} "
        "WHERE m.direction = 'inbound' GROUP BY m.id"
    )
    strays = await conn.fetch(
        "SELECT j.id, j.message_id FROM background_jobs j "
        "LEFT JOIN messages m ON m.id = j.message_id "
        f"WHERE {post_process} AND m.direction IS DISTINCT FROM 'inbound'"
    )
    drafts = await conn.fetch(
        "SELECT d.id, d.status, i.email_bison_reply_id AS inbound_reply_id, "
        "array_remove(array_agg(DISTINCT o.id), NULL) AS message_ids, "
        "array_remove(array_agg(DISTINCT o.email_bison_reply_id), NULL) AS sent_ids, "
        "max(j.status) AS job_status "
        "FROM ai_drafts d JOIN messages i ON i.id = d.message_id "
        "LEFT JOIN messages o ON o.ai_draft_id = d.id "
        "LEFT JOIN background_jobs j ON j.message_id = o.id AND j.type = 'DRAFT_SEND' "
        "GROUP BY d.id, d.status, i.email_bison_reply_id"
    )
    alerts = await conn.fetch("SELECT workspace_id, kind, day, outcome FROM alerts")
    notified, dead_unnotified = interested_notified_once(fakes, inbound)
    problems = [
        *stored_once(provider, messages),
        *one_job_each(inbound, strays),
        *one_handler_at_once(fakes),
        *drafts_sent_once(plan, provider, fakes, drafts),
        *alerts_once(fakes, alerts),
        *notified,
    ]
    answers = collections.Counter(s for copy in provider.delivered for s in copy.statuses)
    figures = {
        "copies posted": len(provider.delivered),
        "answers": dict(answers),
        "messages": len(messages),
        "jobs": dict(collections.Counter(str(m["job_status"]) for m in inbound)),
        "drafts pressed": len(provider.presses),
        "drafts": dict(collections.Counter(d["status"] for d in drafts)),
        "slack": dict(collections.Counter(p.outcome for p in fakes.slack_posts)),
        "alerts": dict(collections.Counter(str(a["outcome"]) for a in alerts)),
        "notified": dict(collections.Counter(str(m["notify_outcome"]) for m in inbound)),
        "interested, job dead, not notified": dead_unnotified,
    }
    return problems, figures

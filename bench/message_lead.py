"""What giving a new message its lead costs: inserted with it, or updated with it afterwards.

    .venv/bin/python -m bench.message_lead --groups 300 --rounds 3

On a fresh PostgreSQL database migrated by hookgate, with 10,000 leads: ``--groups`` groups of
20 new messages, each one transaction, written the way ``gateway/ingest_store.py`` writes them
(``insert_messages``, one JSON array), alternating per round between the message inserted with
``lead_id`` and the message inserted without it, then ``lead_id`` set by one ``UPDATE … FROM``
the JSON array (what the group did before its leads were upserted first).  Prints ms per group.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import orjson

from bench import _common as c
from sql.queries import get

GROUP = 20
LEADS = 10_000

UPDATE_LEADS = """
UPDATE messages m SET lead_id = r.lead_id
FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS r(id bigint, lead_id bigint)
WHERE m.id = r.id
"""


def _rows(workspace_id: str, first_lead: int, tag: str, group: int) -> list[dict[str, Any]]:
    return [
        {
            "workspace_id": workspace_id,
            "channel": "email",
            "direction": "inbound",
            "provider": "emailbison",
            "event": "LEAD_REPLIED",
            "subject": "Re: Quick question",
            "body": "Hi Sam, thanks for reaching out. Can you send over pricing?",
            "sent_at": None,
            "interested": False,
            "now": "2026-01-01 00:00:00",
            "email_bison_reply_id": f"{tag}-{group}-{i}",
            "delivery_id": None,
            "provider_thread_id": None,
            "lead_id": first_lead + (group * GROUP + i) % LEADS,
        }
        for i in range(GROUP)
    ]


async def _measure(url: str, groups: int, rounds: int) -> list[tuple[str, float]]:
    conn = await asyncpg.connect(url)
    try:
        workspace_id = await conn.fetchval("SELECT id FROM workspaces")
        await conn.execute(
            "INSERT INTO leads (workspace_id, email) "
            "SELECT $1, 'lead' || g || '@example.com' FROM generate_series(1, $2) AS g",
            workspace_id,
            LEADS,
        )
        first_lead = await conn.fetchval("SELECT min(id) FROM leads")
        await conn.execute("ANALYZE")
        insert = get("postgres", "insert_messages").positional_sql
        results = []
        for round_no in range(rounds):
            for mode in ("inserted with its lead", "updated with its lead afterwards"):
                with_lead = mode.startswith("inserted")
                started = time.perf_counter()
                for group in range(groups):
                    rows = _rows(workspace_id, first_lead, f"{round_no}{mode[0]}", group)
                    if not with_lead:
                        leads = [row.pop("lead_id") for row in rows]
                    async with conn.transaction():
                        inserted = await conn.fetch(insert, orjson.dumps(rows).decode())
                        if not with_lead:
                            links = [
                                {"id": r["id"], "lead_id": lead}
                                for r, lead in zip(inserted, leads, strict=True)
                            ]
                            await conn.execute(UPDATE_LEADS, orjson.dumps(links).decode())
                elapsed_ms = (time.perf_counter() - started) * 1000 / groups
                results.append((f"round {round_no + 1}: {mode}", elapsed_ms))
        return results
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.message_lead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with c.pg_database("lead") as url:
        c.create_workspace(url)
        results = asyncio.run(_measure(url, args.groups, args.rounds))
    print(
        c.table(
            ["20 new messages per group", "ms per group"], [(m, f"{ms:.2f}") for m, ms in results]
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``context_packs`` cron: builds pending insights packs lead by lead.

A pack (``POST /api/workspaces/{id}/context-packs`` or ``hookgate packs create``) asks for a
summary of each of the workspace's leads' conversations.  A run takes the open packs in order and
for each reads the leads it has not finished, in batches (``LEAD_BATCH``, keyset on lead id), and
hands them to ``INSIGHTS_CONTEXT_PACK_LEAD_CONCURRENCY`` workers: never more leads in flight.
Per lead: read its conversation, one AI summary (source ``cron:context_packs``, under a time
budget), then one transaction writes its ``context_pack_items`` row and counts it on the pack.
A lead with an item is finished, so a rerun skips it: packs are resumable at any point.

Failures:
- a lost database connection (the P1001 class, ``sql.is_connection_lost``) retries that step
  with exponential backoff from ``CONTEXT_PACK_RETRY_BASE_MS``; when one step has failed
  ``CONTEXT_PACK_BREAKER_THRESHOLD`` times in a row (each step, so each lead worker, counts its
  own: a blip shorter than a step's retry budget never opens it) the circuit breaker opens: the
  run ends early with one error log line (``context_pack_breaker_open``), leads in flight are
  abandoned unwritten, and the next tick starts over from the finished leads;
- any other error (the model timed out or failed, a bad row) fails that lead's item, not the run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from clients.context import ai_source, time_budget
from gateway.runtime import Runtime
from scheduler.crons import CronResult
from sql import DatabaseError, Row, is_connection_lost

log = logging.getLogger("hookgate.context_packs")

T = TypeVar("T")

SOURCE = "cron:context_packs"
PURPOSE = "context_pack_summary"
LEAD_BATCH = 100
MAX_PACKS_PER_RUN = 20
CONVERSATION_MESSAGES = 30
MESSAGE_CHARS = 1500
RETRY_CAP_S = 10.0
MIN_JITTER = 0.5  # a backoff waits between half and all of its nominal delay

SYSTEM_PROMPT = (
    "You summarise one sales lead's conversation for an insights report. In at most five "
    "sentences: who the lead is, what they said they need or object to, where the conversation "
    "stands, and the next step. Plain text, no lists."
)


class BreakerOpen(Exception):
    """The database kept dropping away: the run stops and resumes on the next tick."""


class Breaker:
    """Retries one database step that lost the connection, with backoff, and opens for the whole
    run when a single step has failed ``threshold`` times in a row.  Each step counts its own
    consecutive failures: the lead workers that all fail at once in one short blip count once
    each, not together, so a blip shorter than a step's retry budget (``retry_budget_s``) never
    opens the breaker, however many workers run."""

    def __init__(
        self, runtime: Runtime, threshold: int, base_s: float, rng: random.Random | None = None
    ) -> None:
        self.runtime = runtime
        self.threshold = threshold
        self.base_s = base_s
        self.last_error: str | None = None
        self.opened_at: dt.datetime | None = None
        self._rng = rng or random.Random()

    @property
    def retry_budget_s(self) -> float:
        """The least time a step keeps retrying before it opens the breaker: the sum of its
        backoffs at their shortest jitter (the attempts themselves only add to it)."""
        delays = (self._delay_s(attempt) for attempt in range(1, self.threshold))
        return MIN_JITTER * sum(delays)

    def _delay_s(self, attempt: int) -> float:
        return min(RETRY_CAP_S, self.base_s * 2.0 ** (attempt - 1))

    async def step(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self.threshold + 1):
            if self.opened_at is not None:
                raise BreakerOpen
            try:
                return await call()
            except DatabaseError as exc:
                if not is_connection_lost(exc):
                    raise
                self.last_error = str(exc)
                if attempt == self.threshold:
                    break
                log.warning(
                    "context pack step lost the database; retrying",
                    extra={"step": what, "attempt": attempt},
                )
                await asyncio.sleep(self._delay_s(attempt) * self._rng.uniform(MIN_JITTER, 1.0))
        if self.opened_at is None:
            self.opened_at = self.runtime.clock()
        raise BreakerOpen


async def build_context_packs(runtime: Runtime) -> CronResult:
    """The cron's function."""
    return await ContextPackBuilder(runtime).run()


class ContextPackBuilder:
    def __init__(self, runtime: Runtime, *, batch_size: int = LEAD_BATCH) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.db = runtime.db
        self.batch_size = batch_size
        self.concurrency = settings.insights_context_pack_lead_concurrency
        self.lead_budget_s = settings.ai_timeout_s
        self.breaker = Breaker(
            runtime,
            settings.context_pack_breaker_threshold,
            settings.context_pack_retry_base_ms / 1000,
        )
        self.finished = 0
        self.failed = 0

    async def run(self) -> CronResult:
        clients = self.runtime.clients
        if clients is None or not clients.ai.enabled:
            return CronResult("skipped", {"reason": "AI is off (OPENAI_API_KEY unset)"})
        packs_done = 0
        pack_id: int | None = None
        try:
            with ai_source(SOURCE):
                packs = await self.breaker.step(
                    "list packs",
                    lambda: self.db.fetch_all("packs_to_build", limit=MAX_PACKS_PER_RUN),
                )
                for pack in packs:
                    pack_id = int(pack["id"])
                    if await self._build_pack(pack_id):
                        packs_done += 1
        except BreakerOpen:
            log.error(
                "context pack run ended early: circuit breaker open after a step lost the "
                f"database {self.breaker.threshold} times in a row; finished leads are kept and "
                "the next run resumes",
                extra={
                    "event": "context_pack_breaker_open",
                    "pack_id": pack_id,
                    "threshold": self.breaker.threshold,
                    "retry_budget_s": self.breaker.retry_budget_s,
                    "last_error": self.breaker.last_error,
                    "leads_done": self.finished,
                },
            )
            return CronResult("breaker_open", self._detail(packs_done), self.breaker.opened_at)
        return CronResult("ok", self._detail(packs_done))

    def _detail(self, packs_done: int) -> dict[str, int]:
        return {"packs_done": packs_done, "leads_done": self.finished, "leads_failed": self.failed}

    async def _build_pack(self, pack_id: int) -> bool:
        """Build one pack as far as it goes; True when it is done.  Errors other than the
        breaker are recorded on the pack, and the run goes on to the next one."""
        try:
            return await self._build(pack_id)
        except BreakerOpen:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("context pack build failed", extra={"pack_id": pack_id})
            await self.breaker.step(
                "record pack error",
                lambda: self.db.execute("record_context_pack_error", id=pack_id, error=error),
            )
            return False

    async def _build(self, pack_id: int) -> bool:
        pack = await self.breaker.step(
            "start pack",
            lambda: self.db.fetch_one("start_context_pack", id=pack_id, now=self.runtime.clock()),
        )
        if pack is None:
            return False  # finished meanwhile
        workspace_id = str(pack["workspace_id"])
        remaining = max(int(pack["leads_total"] or 0) - int(pack["leads_done"]), 0)
        queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=self.concurrency)
        complete = False
        broke = False
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.concurrency):
                    group.create_task(self._worker(pack_id, workspace_id, queue))
                complete = await self._feed(pack_id, workspace_id, remaining, queue)
                for _ in range(self.concurrency):
                    await queue.put(None)
        except* BreakerOpen:
            broke = True
        if broke:
            raise BreakerOpen
        if not complete:
            return False  # leads arrived faster than the batches: the next run goes on
        await self.breaker.step(
            "finish pack",
            lambda: self.db.execute("finish_context_pack", id=pack_id, now=self.runtime.clock()),
        )
        log.info("context pack built", extra={"pack_id": pack_id, "workspace_id": workspace_id})
        return True

    async def _feed(
        self, pack_id: int, workspace_id: str, remaining: int, queue: asyncio.Queue[Row | None]
    ) -> bool:
        """Queue the pack's unfinished leads batch by batch; True when none is left.  Bounded by
        the number of batches the leads counted at start need, plus one to see the end."""
        after_id = 0
        for _ in range(remaining // self.batch_size + 2):
            read = partial(
                self.db.fetch_all,
                "context_pack_leads",
                workspace_id=workspace_id,
                pack_id=pack_id,
                after_id=after_id,
                limit=self.batch_size,
            )
            batch = await self.breaker.step("read leads", read)
            if not batch:
                return True
            for lead in batch:
                await queue.put(lead)
            after_id = int(batch[-1]["id"])
        return False

    async def _worker(
        self, pack_id: int, workspace_id: str, queue: asyncio.Queue[Row | None]
    ) -> None:
        while (lead := await queue.get()) is not None:
            await self._summarise(pack_id, workspace_id, lead)

    async def _summarise(self, pack_id: int, workspace_id: str, lead: Row) -> None:
        lead_id = int(lead["id"])
        summary: str | None = None
        error: str | None = None
        try:
            messages = await self.breaker.step(
                "read conversation",
                lambda: self.db.fetch_all(
                    "lead_conversation",
                    workspace_id=workspace_id,
                    lead_id=lead_id,
                    limit=CONVERSATION_MESSAGES,
                ),
            )
            assert self.runtime.clients is not None
            with time_budget(self.lead_budget_s):
                result = await self.runtime.clients.ai.complete(
                    purpose=PURPOSE,
                    system=SYSTEM_PROMPT,
                    prompt=lead_prompt(lead, messages),
                    workspace_id=workspace_id,
                )
            if result.status == "ok":
                summary = result.text
            else:
                error = f"{result.status}: {result.error}"
        except BreakerOpen:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        try:
            await self.breaker.step(
                "write item", lambda: self._write_item(pack_id, lead_id, summary, error)
            )
        except DatabaseError as exc:
            log.error(
                "context pack item not written; the next run retries the lead",
                extra={"pack_id": pack_id, "lead_id": lead_id, "error": str(exc)},
            )
            return
        self.finished += 1
        if error is not None:
            self.failed += 1
            log.warning(
                "context pack lead failed",
                extra={"pack_id": pack_id, "lead_id": lead_id, "error": error},
            )

    async def _write_item(
        self, pack_id: int, lead_id: int, summary: str | None, error: str | None
    ) -> None:
        async with self.db.transaction() as conn:
            inserted = await conn.fetch_one(
                "insert_context_pack_item",
                pack_id=pack_id,
                lead_id=lead_id,
                status="failed" if error is not None else "done",
                summary=summary,
                error=error,
                now=self.runtime.clock(),
            )
            if inserted is not None:
                await conn.execute(
                    "count_context_pack_item", id=pack_id, failed=1 if error is not None else 0
                )


def lead_prompt(lead: Row, messages: list[Row]) -> str:
    name = " ".join(p for p in (lead["first_name"], lead["last_name"]) if p) or "unknown"
    role = " at ".join(p for p in (lead["title"], lead["company"]) if p)
    contact = lead["email"] or lead["phone"] or lead["linkedin_id"] or "no contact"
    lines = [
        f"Lead #{lead['id']}: {name}" + (f", {role}" if role else "") + f" <{contact}>",
        f"Status: {lead['status'] or 'unknown'}; "
        f"interested: {'yes' if lead['interested'] else 'no'}"
        + (f"; sentiment: {lead['sentiment']}" if lead["sentiment"] else ""),
        "Conversation, oldest first:" if messages else "No messages yet.",
    ]
    for message in reversed(messages):
        when = (message["sent_at"] or message["created_at"]).strftime("%Y-%m-%d %H:%M")
        subject = f" | {message['subject']}" if message["subject"] else ""
        body = (message["body"] or "").strip()[:MESSAGE_CHARS]
        lines.append(f"[{when} {message['direction']} {message['channel']}{subject}] {body}")
    return "\n".join(lines)

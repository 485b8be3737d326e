"""A storm for ``bench.ingest``: 100 identical copies of one delivery released together.

Per backend, a fresh database and a live ``hookgate serve`` (scheduler on), warmed up with
distinct deliveries; then ``rounds`` rounds, each opening its connections first and releasing
``copies`` identical EmailBison ``LEAD_REPLIED`` POSTs at once (a fresh ``reply.id`` per round,
``bench.naive.burst``).  Reported: answers by status, rows and jobs stored per round (one each),
and the client-side p50/p99/max over every copy of every round.  Issue 15's target: p99 under
30 ms on both backends.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses

from bench import _common as c
from bench import naive

TARGET_P99_MS = 30.0
TARGETS = {"hookgate-pg": "postgres", "hookgate-sqlite": "sqlite"}


@dataclasses.dataclass(frozen=True, slots=True)
class StormResult:
    target: str
    rounds: int
    copies: int
    statuses: dict[str, int]
    rows: int
    duplicate_rows: int
    jobs: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @property
    def met(self) -> bool:
        return (
            self.p99_ms < TARGET_P99_MS
            and set(self.statuses) == {"2xx"}
            and self.rows == self.rounds
            and self.duplicate_rows == 0
            and self.jobs == self.rounds
        )


def measure(target: str, rounds: int, copies: int) -> StormResult:
    with c.database(TARGETS[target], "storm") as url:
        path = c.create_workspace(url).emailbison_path
        with c.start_hookgate(url) as server:
            endpoint = server.base_url + path
            asyncio.run(naive.warmup(endpoint, copies))
            latencies: list[float] = []
            statuses: collections.Counter[str] = collections.Counter()
            keys: list[str] = []
            for round_no in range(rounds):
                reply_id = 8_000_000 + round_no
                keys.append(str(reply_id))
                payload = naive.body(reply_id, round_no)
                for status, ms in asyncio.run(naive.burst(endpoint, copies, payload)):
                    statuses[f"{status // 100}xx"] += 1
                    latencies.append(ms)
        rows, duplicates, jobs = naive.count(target, url, keys)
    latencies.sort()
    return StormResult(
        target=target,
        rounds=rounds,
        copies=copies,
        statuses=dict(sorted(statuses.items())),
        rows=rows,
        duplicate_rows=duplicates,
        jobs=jobs,
        p50_ms=c.percentile(latencies, 50),
        p99_ms=c.percentile(latencies, 99),
        max_ms=latencies[-1],
    )


def report(results: list[StormResult]) -> str:
    headers = [
        "target", "rounds x copies", "answers", "rows / rounds", "duplicate rows",
        "jobs / rounds", "p50 ms", "p99 ms", "max ms", f"p99 < {TARGET_P99_MS:g} ms",
    ]  # fmt: skip
    rows = [
        (
            r.target,
            f"{r.rounds} x {r.copies}",
            " ".join(f"{k}: {v}" for k, v in r.statuses.items()),
            f"{r.rows} / {r.rounds}",
            r.duplicate_rows,
            f"{r.jobs} / {r.rounds}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.0f}",
            "met" if r.met else "MISSED",
        )
        for r in results
    ]
    return c.table(headers, rows)

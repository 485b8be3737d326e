"""The tables ``bench.ingest`` prints: every run, then each target against the ceilings.

Ratios are of medians over the runs of one mix, against the same run's ``ceiling-pg`` (the
per-request ceiling) and ``ceiling-batch-pg`` (the batched one).  Issue 15's targets, checked
per mix: ``hookgate-pg`` at least 1.0x the per-request ceiling's req/s with a p99 no higher
than its, every answer 2xx and one job per stored message; ``hookgate-sqlite`` at least 0.7x
the per-request ceiling's req/s; CPU per delivery (server + database) no higher than the
per-request ceiling's.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections.abc import Sequence

from bench import _common as c

CEILING = "ceiling-pg"
BATCHED = "ceiling-batch-pg"
# target -> the least req/s ratio against CEILING that meets issue 15.
RPS_TARGETS = {"hookgate-pg": 1.0, "hookgate-pg-nosched": 1.0, "hookgate-sqlite": 0.7}
P99_TARGETS = {"hookgate-pg": 1.0, "hookgate-pg-nosched": 1.0}


@dataclasses.dataclass(slots=True)
class Result:
    target: str
    mix: str
    repeat: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    answered: int  # 2xx answers
    cpu_us: float  # server process CPU per answered delivery
    db_cpu_us: float | None  # PostgreSQL backends' CPU per answered delivery (None on SQLite)
    messages: int
    jobs: int
    log_problems: list[str]

    @property
    def total_cpu_us(self) -> float:
        """Server + database CPU per answered delivery (SQLite runs inside the server)."""
        return self.cpu_us + (self.db_cpu_us or 0.0)


def _median(results: Sequence[Result], attr: str) -> float:
    return statistics.median(float(getattr(r, attr)) for r in results)


def runs_table(results: Sequence[Result], args: argparse.Namespace) -> str:
    headers = [
        "target", "mix", "run", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx",
        "socket err", "server CPU µs/delivery", "PG CPU µs/delivery", "CPU µs/delivery total",
        "messages stored", "jobs stored",
    ]  # fmt: skip
    rows = [
        (
            r.target,
            r.mix,
            r.repeat,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.0f}",
            r.non_2xx,
            r.socket_errors,
            f"{r.cpu_us:,.0f}",
            "-" if r.db_cpu_us is None else f"{r.db_cpu_us:,.0f}",
            f"{r.total_cpu_us:,.0f}",
            f"{r.messages:,}",
            f"{r.jobs:,}",
        )
        for r in results
    ]
    return (
        f"### Ingest: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
        f"(warm-up {args.warmup:g}s), EmailBison LEAD_REPLIED, "
        f"PostgreSQL synchronous_commit={args.sync_commit}\n\n" + c.table(headers, rows)
    )


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def ratios_table(results: Sequence[Result]) -> tuple[str, bool]:
    """Medians per (target, mix) with their ratios to the ceilings, and issue 15's verdict."""
    lines = []
    ok = True
    mixes = dict.fromkeys(r.mix for r in results)
    targets = dict.fromkeys(r.target for r in results)
    for mix in mixes:
        ceiling = [r for r in results if r.mix == mix and r.target == CEILING]
        batched = [r for r in results if r.mix == mix and r.target == BATCHED]
        for target in targets:
            runs = [r for r in results if r.mix == mix and r.target == target]
            rps, p99, cpu = (_median(runs, a) for a in ("rps", "p99_ms", "total_cpu_us"))
            verdict = "-"
            if ceiling and target in RPS_TARGETS:
                c_rps, c_p99, c_cpu = (
                    _median(ceiling, a) for a in ("rps", "p99_ms", "total_cpu_us")
                )
                misses = []
                if rps < RPS_TARGETS[target] * c_rps:
                    misses.append(f"req/s < {RPS_TARGETS[target]:g}x")
                if target in P99_TARGETS and p99 > P99_TARGETS[target] * c_p99:
                    misses.append("p99 > ceiling's")
                if cpu > c_cpu:
                    misses.append("CPU > ceiling's")
                if any(r.non_2xx or r.socket_errors or r.jobs != r.messages for r in runs):
                    misses.append("non-2xx, socket errors or jobs != messages")
                verdict = "met" if not misses else "MISSED: " + "; ".join(misses)
                ok = ok and not misses
            lines.append(
                (
                    target,
                    mix,
                    f"{rps:,.0f}",
                    _ratio(rps, _median(ceiling, "rps")) if ceiling else "-",
                    _ratio(rps, _median(batched, "rps")) if batched else "-",
                    f"{p99:.1f}",
                    _ratio(p99, _median(ceiling, "p99_ms")) if ceiling else "-",
                    f"{cpu:,.0f}",
                    _ratio(cpu, _median(ceiling, "total_cpu_us")) if ceiling else "-",
                    verdict,
                )
            )
    headers = [
        "target", "mix", "req/s", "vs per-request ceiling", "vs batched ceiling", "p99 ms",
        "p99 vs per-request ceiling", "CPU µs/delivery (server + db)", "CPU vs per-request ceiling",
        "issue 15 target",
    ]  # fmt: skip
    text = (
        "### Against the ceilings (medians over runs; targets: hookgate-pg >= 1.0x req/s and "
        "p99 <= 1.0x, hookgate-sqlite >= 0.7x req/s, CPU <= 1.0x)\n\n" + c.table(headers, lines)
    )
    return text, ok


def warnings(results: Sequence[Result]) -> list[str]:
    found = []
    for r in results:
        lost_jobs = r.target.startswith("hookgate") and r.jobs != r.messages
        if r.non_2xx or r.socket_errors or lost_jobs:
            found.append(
                f"WARNING {r.target} {r.mix} run {r.repeat}: non-2xx={r.non_2xx} "
                f"socket errors={r.socket_errors} messages={r.messages} jobs={r.jobs}"
            )
            found += [f"    server log: {line}" for line in r.log_problems]
    return found

"""Prometheus metrics, on a registry of the app's own (so several apps can live in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sql import Database


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "hookgate_webhooks_total",
            "Webhook deliveries by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.dedupe_hits = Counter(
            "hookgate_dedupe_hits_total",
            "Deliveries whose message was already stored",
            ["provider"],
            registry=self.registry,
        )
        self.quarantined = Counter(
            "hookgate_quarantined_total",
            "Deliveries no parser could read, kept for replay (answered 202, or 200 to Unipile)",
            ["provider"],
            registry=self.registry,
        )
        self.delivery_stats_dropped = Counter(
            "hookgate_delivery_stats_dropped_total",
            "Deliveries left out of delivery_stats: their counts waited longer than "
            "DELIVERY_STATS_MAX_PENDING_MINUTES for the database, or it was down at shutdown",
            registry=self.registry,
        )
        self.ghl_undated_workflow_sms = Counter(
            "hookgate_ghl_undated_workflow_sms_total",
            "GoHighLevel workflow SMS without Custom Data Date and Time (identical replies from "
            "one contact are merged), by workspace",
            ["workspace"],
            registry=self.registry,
        )
        self.ingest_group_size = Histogram(
            "hookgate_ingest_group_size",
            "Deliveries stored together in one transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.ingest_commit_seconds = Histogram(
            "hookgate_ingest_commit_seconds",
            "Time from a group's first statement to its commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )

        self.jobs_claimed = Counter(
            "hookgate_jobs_claimed_total",
            "Job runs claimed by this process",
            ["type"],
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "hookgate_jobs_finished_total",
            "Job runs by outcome: succeeded, failed (to be retried) or dead",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.jobs_running = Gauge(
            "hookgate_jobs_running", "Job runs in flight in this process", registry=self.registry
        )
        self.jobs_queued = Gauge(
            "hookgate_jobs_queued",
            "Pending and running jobs in the database, by type (refreshed by the poll tick)",
            ["type", "status"],
            registry=self.registry,
        )
        # (provider, outcome) -> the counter children one answer increments, bound on first use.
        self._answered: dict[tuple[str, str], tuple[Counter, ...]] = {}
        self.job_duration = Histogram(
            "hookgate_job_duration_seconds",
            "Job run durations by type and outcome",
            ["type", "outcome"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )

    def count_webhook(self, provider: str, outcome: str) -> None:
        """One answered delivery: ``hookgate_webhooks_total`` and, for a duplicate or a
        quarantined delivery, its own counter too.  The children are bound once per (provider,
        outcome) — a few dozen pairs — since ``labels()`` takes a lock and builds a key each
        call."""
        children = self._answered.get((provider, outcome))
        if children is None:
            children = (self.webhooks.labels(provider, outcome),)
            if outcome == "deduped":
                children += (self.dedupe_hits.labels(provider),)
            elif outcome == "quarantined":
                children += (self.quarantined.labels(provider),)
            self._answered[(provider, outcome)] = children
        for child in children:
            child.inc()

    async def refresh_queue_depth(self, db: Database) -> None:
        counts = await db.fetch_all("queue_depth")
        self.jobs_queued.clear()  # a type whose queue emptied drops out instead of going stale
        for row in counts:
            self.jobs_queued.labels(row["type"], row["status"]).set(row["n"])

    def render(self) -> bytes:
        return generate_latest(self.registry)

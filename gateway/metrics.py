"""Prometheus metrics, on a registry of the app's own (so several apps can live in one test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)

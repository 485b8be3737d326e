"""The Python pieces of one delivery's path outside the store, each timed alone (µs per call).

    .venv/bin/python -m bench.path_pieces            # best of 7 x 20,000 calls per piece

What ``POST /webhooks/emailbison/…`` runs around its statements, on the fixture delivery:
the workspace id check, the token check, the JSON parse, the EmailBison parser (lead address
included), the AI-source context every HTTP request enters, the metrics of one answer, and the
"dedupe hit" log line a duplicate writes (formatted and written to a file, as ``hookgate`` logs).
CPU-bound and in one process, so the figures hold on a busy machine far better than a load
test's; to compare two versions, run it from a copy of ``bench/`` with the other version on
``PYTHONPATH`` (bench/README.md, ``bench.path_cost``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import sys
import tempfile
import timeit
from collections.abc import Callable

import orjson

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()
WORKSPACE_ID = "ws_0123456789abcdef"
TOKEN = "t0k3n-for-the-bench-0123456789"


def pieces() -> dict[str, Callable[[], object]]:
    from clients.context import ai_source
    from gateway import webhooks
    from gateway.metrics import Metrics
    from gateway.providers import emailbison
    from gateway.providers.base import Delivery, token_auth
    from gateway.settings import Settings
    from gateway.workspaces import hash_secret, is_workspace_id

    raw = TEMPLATE.replace("__REPLY_ID__", "1000000123").replace("__LEAD__", "42").encode()
    payload = orjson.loads(raw)
    delivery = Delivery(
        provider="emailbison",
        workspace={"id": WORKSPACE_ID, "emailbison_token_hash": hash_secret(TOKEN)},
        headers={"content-type": "application/json"},
        query={"token": TOKEN},
        raw_body=raw,
        received_at=dt.datetime.now(dt.UTC),
        settings=Settings.from_env({"DATABASE_URL": "sqlite:///unused.db"}),
    )
    metrics = Metrics()
    if hasattr(metrics, "count_webhook"):  # one helper per answer

        def answer_metrics() -> None:
            metrics.count_webhook("emailbison", "deduped")

    else:  # labels() per answer, as before

        def answer_metrics() -> None:
            metrics.webhooks.labels("emailbison", "deduped").inc()
            metrics.dedupe_hits.labels("emailbison").inc()

    log = logging.getLogger("hookgate.ingest")
    extra = {
        "event": "LEAD_REPLIED",
        "key_name": "email_bison_reply_id",
        "key_value": "1000000123",
        "workspace_id": WORKSPACE_ID,
        "lead_id": 42,
        "message_id": 4242,
        "deduped": True,
    }

    def route_source() -> None:
        with ai_source(f"route:/webhooks/emailbison/{WORKSPACE_ID}"):
            pass

    return {
        "is_workspace_id": lambda: is_workspace_id(WORKSPACE_ID),
        "token check (sha256 + compare)": lambda: token_auth(delivery),
        "JSON parse (orjson)": lambda: webhooks._parse_json(raw),
        "EmailBison parser": lambda: emailbison.parse(payload, delivery),
        "AI source context (per HTTP request)": route_source,
        "metrics of one answer (deduped)": answer_metrics,
        "dedupe log line (format + write)": lambda: log.info("dedupe hit", extra=extra),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.path_pieces", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=7, help="timings per piece (best kept)")
    args = parser.parse_args(argv)
    from gateway import logs

    rows = []
    with tempfile.TemporaryFile("w") as log_file, contextlib.redirect_stderr(log_file):
        logs.configure("INFO")
        for name, call in pieces().items():
            best = min(timeit.repeat(call, number=args.number, repeat=args.repeat))
            rows.append((name, f"{best / args.number * 1e6:.2f}"))
    import gateway

    print(f"### Path pieces ({gateway.__file__.rsplit('/', 2)[0]})\n")
    print(c.table(["piece", "µs per call (best of runs)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

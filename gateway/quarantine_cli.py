"""``hookgate deliveries list|show|replay|discard``: the webhook quarantine from the command line
(added to the parser by ``gateway.cli``).  Bodies are shown with their secrets masked."""

from __future__ import annotations

import argparse
import json

from gateway import quarantine
from gateway.commands import print_json, run_with_runtime
from gateway.quarantine import ReplayResult
from gateway.runtime import Runtime
from gateway.settings import Settings


def describe(result: ReplayResult) -> str:
    """One line a person can read: what the replay did with delivery ``result.id``."""
    if not result.ok:
        return f"delivery {result.id} still unreadable ({result.status}): {result.error}"
    if result.ignored:
        return f"delivery {result.id} replayed: {result.event} is not a message, nothing stored"
    if result.deduped:
        return (
            f"delivery {result.id} replayed: message {result.message_id} was already stored "
            "(deduped), nothing new"
        )
    return f"delivery {result.id} replayed: stored message {result.message_id} ({result.event})"


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        rows = await quarantine.list_deliveries(
            runtime.db,
            workspace_id=args.workspace,
            provider=args.provider,
            status=args.status,
            limit=args.limit,
        )
        if args.json:
            print_json(rows)
            return 0
        for row in rows:
            error = row["error"].replace("\n", " ")
            print(
                f"{row['id']:>8}  {row['received_at']:%Y-%m-%d %H:%M:%S}  {row['workspace_id']}  "
                f"{row['provider']:<10} {row['status']:<9} {error[:100]}"
            )
        return 0

    return run_with_runtime(settings, work)


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        shown = await quarantine.show_delivery(runtime.db, args.id)
        if shown is None:
            print(f"no quarantined delivery {args.id}")
            return 1
        if args.json:
            print_json(shown)
            return 0
        print(f"delivery {shown['id']}  {shown['provider']}  workspace {shown['workspace_id']}")
        print(f"status:   {shown['status']}  (received {shown['received_at']})")
        if shown["replayed_message_id"] is not None:
            print(f"message:  {shown['replayed_message_id']}")
        print(f"error:    {shown['error']}")
        print("headers:  " + json.dumps(shown["headers"], sort_keys=True))
        print("body (secrets masked):")
        print(json.dumps(shown["body"], indent=2, ensure_ascii=False))
        return 0

    return run_with_runtime(settings, work)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        if args.all:
            results = await quarantine.replay_pending(runtime.db, settings, provider=args.provider)
        else:
            one = await quarantine.replay(runtime.db, settings, args.id)
            if one is None:
                print(f"no quarantined delivery {args.id}")
                return 1
            results = [one]
        if args.json:
            print_json([result.as_dict() for result in results])
        else:
            for result in results:
                print(describe(result))
            if args.all:
                failed = sum(not result.ok for result in results)
                print(f"{len(results) - failed} replayed, {failed} still pending")
        return 0 if all(result.ok for result in results) else 1

    return run_with_runtime(settings, work)


def cmd_discard(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        if await quarantine.discard(runtime.db, args.id):
            print(f"delivery {args.id} discarded (deleted after QUARANTINE_RETENTION_DAYS)")
            return 0
        print(f"no pending quarantined delivery {args.id}")
        return 1

    return run_with_runtime(settings, work)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliveries = commands.add_parser(
        "deliveries", help="quarantined deliveries: payloads no parser could read"
    )
    sub = deliveries.add_subparsers(dest="deliveries_command", required=True)

    listing = sub.add_parser("list", help="list quarantined deliveries, oldest first")
    listing.add_argument("--workspace", help="a workspace id")
    listing.add_argument("--provider", help="emailbison, ghl, unipile, smartlead or instantly")
    listing.add_argument("--status", choices=quarantine.STATUSES)
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="one delivery: its error, headers and body")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=cmd_show)

    replay = sub.add_parser(
        "replay",
        help="run the current parser over a delivery and store it like a live one "
        "(exactly once: a second replay stores nothing new)",
    )
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the delivery id")
    which.add_argument("--all", action="store_true", help="every pending delivery")
    replay.add_argument("--provider", help="with --all: only this provider's deliveries")
    replay.add_argument("--json", action="store_true", help="print a JSON array of results")
    replay.set_defaults(func=cmd_replay)

    discard = sub.add_parser("discard", help="give up on a pending delivery")
    discard.add_argument("id", type=int)
    discard.set_defaults(func=cmd_discard)

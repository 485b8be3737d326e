"""``hookgate drafts list|cancel|auto-send``: AI drafts and their auto-send from the command line
(added to the parser by ``gateway.cli``)."""

from __future__ import annotations

import argparse

from gateway.commands import print_json, run_with_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from scheduler import auto_send

CANCELLED_FROM_CLI = "cancelled from the command line"


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        rows = await auto_send.list_drafts(
            runtime.db, workspace_id=args.workspace, decision=args.auto_send, limit=args.limit
        )
        if args.json:
            print_json(rows)
            return 0
        for row in rows:
            decision = row["auto_send"] or "-"
            if row["auto_send"] == "scheduled":
                decision += f" for {row['auto_send_at']:%Y-%m-%d %H:%M:%S} UTC"
            elif row["auto_send_reason"]:
                decision += f": {row['auto_send_reason']}"
            confidence = "-" if row["confidence"] is None else f"{row['confidence']:.2f}"
            print(
                f"{row['id']:>8}  {row['workspace_id']}  {row['status']:<12} "
                f"confidence={confidence}  auto-send {decision}"
            )
        return 0

    return run_with_runtime(settings, work)


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        state = await auto_send.cancel_auto_send(runtime.db, args.id, reason=CANCELLED_FROM_CLI)
        if state is None:
            print(f"no draft {args.id}")
            return 1
        refused = auto_send.not_cancellable(state)
        if refused is not None:
            print(f"nothing cancelled: {refused}")
            return 1
        print(
            f"auto-send of draft {args.id} cancelled; it stays a draft "
            f"(POST /api/drafts/{args.id}/send sends it)"
        )
        return 0

    return run_with_runtime(settings, work)


def cmd_auto_send(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        on = args.state == "on"
        if not await auto_send.set_workspace_auto_send(runtime.db, args.workspace, on):
            print(f"no workspace {args.workspace}")
            return 1
        if on:
            print(f"auto-send on for {args.workspace}: new confident drafts send themselves")
        else:
            print(f"auto-send off for {args.workspace}: scheduled auto-sends are skipped when due")
        return 0

    return run_with_runtime(settings, work)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drafts = commands.add_parser("drafts", help="AI drafts and their auto-send")
    sub = drafts.add_subparsers(dest="drafts_command", required=True)

    listing = sub.add_parser("list", help="list drafts, newest first, with their auto-send")
    listing.add_argument("--workspace", help="a workspace id")
    listing.add_argument("--auto-send", choices=auto_send.DECISIONS, help="only this decision")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=cmd_list)

    cancel = sub.add_parser(
        "cancel", help="stop a draft's scheduled auto-send (it stays a draft, sendable by hand)"
    )
    cancel.add_argument("id", type=int, help="the draft id")
    cancel.set_defaults(func=cmd_cancel)

    switch = sub.add_parser(
        "auto-send", help="turn auto-send on or off for a workspace (off also stops scheduled ones)"
    )
    switch.add_argument("workspace", help="the workspace id")
    switch.add_argument("state", choices=("on", "off"))
    switch.set_defaults(func=cmd_auto_send)

"""``hookgate alerts list|resend``: the Slack alerts and interested-lead notifications from the
command line (added to the parser by ``gateway.cli``).  An ``unknown`` outcome (Slack may or may
not have posted it) is never re-posted by hookgate itself; ``resend`` posts it once, on purpose,
and records the new verdict.  A resend of one that was sent is refused."""

from __future__ import annotations

import argparse

from clients.slack import NOT_SENT, SENT, SlackResult
from gateway.commands import print_json, run_with_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from scheduler.alerts import ResendRefused, resend_alert
from scheduler.lead_notifications import resend_notification, unknown_notifications


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        alerts = await runtime.db.fetch_all(
            "list_alerts",
            outcome="unknown" if args.unknown else None,
            workspace_id=args.workspace,
            limit=args.limit,
        )
        notifications = await unknown_notifications(
            runtime.db, workspace_id=args.workspace, limit=args.limit
        )
        if args.json:
            print_json({"alerts": alerts, "notifications": notifications})
            return 0
        for alert in alerts:
            outcome = alert["outcome"] or ("being sent" if alert["claimed_at"] else "due")
            print(
                f"{alert['id']:>8}  {alert['day']}  {alert['workspace_id']}  {alert['kind']:<22} "
                f"{outcome:<10} attempts {alert['attempts']}  suppressed {alert['suppressed']}"
                + (f"  {alert['last_error']}" if alert["last_error"] else "")
            )
            if alert["outcome"] == "unknown":
                print(f"{'':>10}re-send on purpose: hookgate alerts resend {alert['id']}")
        if notifications:
            print("interested-lead notifications whose outcome is unknown:")
        for note in notifications:
            print(
                f"  message {note['message_id']}  {note['workspace_id']}  "
                f"{note['lead_email'] or note['lead_id'] or '-'}  claimed {note['notified_at']}  "
                f"{note['notify_error'] or ''}"
            )
            print(
                f"{'':>10}re-send on purpose: hookgate alerts resend --message {note['message_id']}"
            )
        return 0

    return run_with_runtime(settings, work)


def cmd_resend(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        assert runtime.clients is not None  # open_runtime opens them
        slack = runtime.clients.slack
        what = f"message {args.message}'s notification" if args.message else f"alert {args.id}"
        try:
            if args.message is not None:
                result = await resend_notification(runtime, slack, args.message)
            else:
                result = await resend_alert(runtime.db, slack, args.id)
        except ResendRefused as exc:
            print(f"not re-sent: {exc}")
            return 1
        print(describe(what, result))
        return 0 if result.verdict == SENT else 1

    return run_with_runtime(settings, work)


def describe(what: str, result: SlackResult) -> str:
    if result.sent:
        return f"{what} re-sent: Slack posted it"
    if result.verdict == NOT_SENT:
        return f"{what} not re-sent: {result.error}; its outcome stays unknown"
    return f"{what} re-sent, outcome unknown again: {result.error}"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser(
        "alerts", help="Slack alerts and interested-lead notifications; re-send an unknown one"
    )
    sub = alerts.add_subparsers(dest="alerts_command", required=True)

    listing = sub.add_parser(
        "list",
        help="alerts, newest first, and the interested-lead notifications whose outcome is unknown",
    )
    listing.add_argument(
        "--unknown", action="store_true", help="only alerts whose outcome is unknown"
    )
    listing.add_argument("--workspace", help="a workspace id")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(func=cmd_list)

    resend = sub.add_parser(
        "resend",
        help="post an alert (or a message's notification) whose outcome is unknown once more "
        "and record the new verdict; one that was sent is refused",
    )
    which = resend.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the alert id")
    which.add_argument(
        "--message", type=int, help="a message id: re-send its interested-lead notification"
    )
    resend.set_defaults(func=cmd_resend)

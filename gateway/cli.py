"""The ``hookgate`` command.  Every subcommand reads ``Settings`` once and passes it down."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from gateway import logs, quarantine_cli
from gateway.admin_token import first_admin_token, reset_admin_token, sign_in_url
from gateway.commands import print_json
from gateway.settings import Settings, SettingsError
from gateway.workspaces import WorkspaceOptions, create_workspace, list_workspaces
from scheduler import alerts_cli, cron_cli, drafts_cli
from scheduler import cli as scheduler_cli
from sql import Database, DatabaseError, connect
from sql.migrations import discover

T = TypeVar("T")


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = await connect(
        settings.database_url,
        pool_size=2,
        pgbouncer=settings.database_pgbouncer,
        timeout_s=settings.database_timeout_s,
        sqlite_synchronous=settings.database_sqlite_synchronous,
    )
    try:
        await db.apply_migrations(discover(db.dialect))
        return await work(db)
    finally:
        await db.close()


def _local_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches a server listening on ``host:port``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.app import create_app

    async def first_start(db: Database) -> str | None:
        return await first_admin_token(db, settings)

    token = asyncio.run(_with_db(settings, first_start))
    if token is not None:
        url = sign_in_url(_local_url(args.host, args.port), token)
        print(
            f"Status page: open {url} to sign in.\n"
            "This URL is shown only now; `hookgate admin reset-token` prints a new one.",
            flush=True,
        )
    uvicorn.run(
        create_app(settings, freeze_startup_heap=True),
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        print(f"schema is at version {discover(db.dialect)[-1].version} ({db.dialect})")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_admin_reset_token(settings: Settings, args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        token = await reset_admin_token(db, settings)
        print(f"Status page: open {sign_in_url(settings.public_url, token)} to sign in.")
        print("This URL is shown only now; a running hookgate serve takes it when restarted.")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_workspace_create(settings: Settings, args: argparse.Namespace) -> int:
    options = WorkspaceOptions(
        slack_channel=args.slack_channel,
        emailbison_workspace_id=args.emailbison_workspace_id,
        emailbison_api_key=args.emailbison_api_key,
        emailbison_base_url=args.emailbison_base_url,
        ghl_location_id=args.ghl_location_id,
        ghl_public_key=args.ghl_public_key,
        unipile_account_id=args.unipile_account_id,
        unipile_own_id=args.unipile_own_id,
        unipile_secret=args.unipile_secret,
        smartlead_secret=args.smartlead_secret,
        instantly_secret=args.instantly_secret,
        auto_send=args.auto_send,
    )

    async def work(db: Database) -> int:
        created = await create_workspace(db, args.name, options)
        webhooks = created.webhooks(settings)
        if args.json:
            print_json({"id": created.id, "name": created.name, "webhooks": webhooks})
        else:
            print(f"workspace {created.id} ({created.name})")
            print("webhook URLs (each carries its token; it is shown only now):")
            for provider, url in webhooks.items():
                print(f"  {provider:<11} {url}")
        return 0

    return asyncio.run(_with_db(settings, work))


def cmd_workspace_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        rows = await list_workspaces(db)
        if args.json:
            print_json(rows)
        else:
            for row in rows:
                print(f"{row['id']}  {row['name']}  slack={row['slack_channel'] or '-'}")
        return 0

    return asyncio.run(_with_db(settings, work))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookgate",
        description="Webhook gateway: stores every provider delivery exactly once. "
        "Settings come from the environment (see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="HTTP server and scheduler in one process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply pending schema migrations")
    migrate.set_defaults(func=cmd_migrate)

    scheduler_cli.add_commands(commands)  # worker, jobs list|stats|retry
    quarantine_cli.add_commands(commands)  # deliveries list|show|replay|discard
    cron_cli.add_commands(commands)  # packs create, crons list|run
    drafts_cli.add_commands(commands)  # drafts list|cancel|auto-send
    alerts_cli.add_commands(commands)  # alerts list|resend

    admin = commands.add_parser("admin", help="the embedded default's own admin token")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    reset = admin_commands.add_parser(
        "reset-token",
        help="replace the admin token a first serve made on SQLite, print its sign-in URL",
    )
    reset.set_defaults(func=cmd_admin_reset_token)

    workspace = commands.add_parser("workspace", help="create and list workspaces")
    ws_commands = workspace.add_subparsers(dest="workspace_command", required=True)
    create = ws_commands.add_parser(
        "create", help="store a workspace and print its webhook URLs with their tokens"
    )
    create.add_argument("--name", required=True)
    create.add_argument("--slack-channel")
    create.add_argument("--emailbison-workspace-id")
    create.add_argument("--emailbison-api-key")
    create.add_argument("--emailbison-base-url")
    create.add_argument("--ghl-location-id")
    create.add_argument("--ghl-public-key", help="GoHighLevel Ed25519 public key (PEM or base64)")
    create.add_argument("--unipile-account-id")
    create.add_argument(
        "--unipile-own-id",
        help="the account owner's LinkedIn member id (ACoA…), for messages that do not say "
        "who sent them; learnt by the health check when UNIPILE_API_KEY is set",
    )
    create.add_argument("--unipile-secret", help="value of the Unipile-Auth header")
    create.add_argument("--smartlead-secret", help="the secret_key SmartLead puts in its bodies")
    create.add_argument("--instantly-secret", help="value of the X-Hookgate-Secret header")
    create.add_argument("--auto-send", action="store_true")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    create.set_defaults(func=cmd_workspace_create)
    listing = ws_commands.add_parser("list", help="list workspaces")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_workspace_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    try:
        result: int = args.func(settings, args)
    except DatabaseError as exc:
        print(f"hookgate: database error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"hookgate: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())

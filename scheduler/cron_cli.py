"""``hookgate packs create WORKSPACE`` and ``hookgate crons list|run NAME`` (added to the parser
by ``gateway.cli``)."""

from __future__ import annotations

import argparse

from gateway.api import create_context_pack
from gateway.commands import print_json, run_with_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from scheduler.crons import CronBusy, CronService


def cmd_packs_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        found = await create_context_pack(runtime.db, args.workspace, runtime.clock())
        if found is None:
            raise ValueError(f"no workspace {args.workspace}")
        pack, created = found
        if args.json:
            print_json({"created": created, "pack": pack})
        else:
            what = "created" if created else "already open"
            print(f"context pack {pack['id']} for {args.workspace}: {what} ({pack['status']})")
        return 0

    return run_with_runtime(settings, work)


def cmd_crons_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        crons = CronService(runtime)
        runs = {row["name"]: row for row in await runtime.db.fetch_all("list_cron_runs")}
        rows = [
            {"name": name, "every_s": spec.interval_s, **runs.get(name, {})}
            for name, spec in sorted(crons.specs.items())
        ]
        if args.json:
            print_json(rows)
        else:
            for row in rows:
                print(
                    f"{row['name']:<16} every {row['every_s']:g} s  "
                    f"last start {row.get('last_started_at') or '-'}  "
                    f"outcome {row.get('last_outcome') or '-'}  "
                    f"breaker opened {row.get('breaker_opened_at') or '-'}"
                )
        return 0

    return run_with_runtime(settings, work)


def cmd_crons_run(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        crons = CronService(runtime)
        if args.name not in crons.specs:
            raise ValueError(f"no cron {args.name!r} ({', '.join(sorted(crons.specs))})")
        try:
            run = await crons.run_now(args.name)
        except CronBusy:
            print(f"hookgate: cron {args.name} is running already")
            return 1
        print_json(run.as_dict())
        return 0 if run.outcome in ("ok", "skipped") else 1

    return run_with_runtime(settings, work)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    packs = commands.add_parser("packs", help="insights context packs")
    pack_commands = packs.add_subparsers(dest="packs_command", required=True)
    create = pack_commands.add_parser(
        "create", help="ask for a context pack (the context_packs cron builds it)"
    )
    create.add_argument("workspace", help="workspace id")
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=cmd_packs_create)

    crons = commands.add_parser("crons", help="the crons: last runs, or run one now")
    cron_commands = crons.add_subparsers(dest="crons_command", required=True)
    listing = cron_commands.add_parser("list", help="each cron's schedule and last run")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_crons_list)
    run = cron_commands.add_parser(
        "run", help="run a cron now in this process (takes its lease like a replica would)"
    )
    run.add_argument("name", help="context_packs or unipile_health")
    run.set_defaults(func=cmd_crons_run)

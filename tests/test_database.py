"""The database port on both backends: verbs, types, transactions and error translation."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import ConstraintViolation, Database, database_now
from sql.errors import UnknownQuery
from sql.queries import compile_query, parse


async def test_rows_are_dicts_with_aware_utc_datetimes_and_bools(db: Database) -> None:
    created = await create_workspace(db, "Acme", WorkspaceOptions(auto_send=True))
    row = await db.fetch_one("get_workspace", id=created.id)
    assert row is not None and row["name"] == "Acme"
    assert row["auto_send"] is True
    assert isinstance(row["created_at"], dt.datetime)
    assert row["created_at"].utcoffset() == dt.timedelta(0)
    assert await db.fetch_one("get_workspace", id="ws_missing") is None
    assert [r["id"] for r in await db.fetch_all("list_workspaces")] == [created.id]


async def test_the_database_clock_is_an_aware_utc_datetime_on_both_backends(db: Database) -> None:
    before = dt.datetime.now(dt.UTC)
    now = await database_now(db)
    after = dt.datetime.now(dt.UTC)
    assert now.utcoffset() == dt.timedelta(0)
    # Same machine, so the database's clock reads the same time as this one, within a second.
    assert before - dt.timedelta(seconds=1) <= now <= after + dt.timedelta(seconds=1)


async def test_execute_returns_the_rows_changed(db: Database) -> None:
    assert await db.execute("mark_lead_interested", id=12345, now=dt.datetime.now(dt.UTC)) == 0


async def test_a_transaction_that_raises_rolls_back(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await conn.execute(
                "insert_workspace",
                **_workspace_params("ws_00000000000000aa"),
            )
            raise Boom
    assert await db.fetch_one("get_workspace", id="ws_00000000000000aa") is None


async def test_a_cancelled_transaction_rolls_back_and_frees_the_database(db: Database) -> None:
    entered = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as conn:
            await conn.execute("insert_workspace", **_workspace_params("ws_00000000000000bb"))
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(stuck())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetch_one("get_workspace", id="ws_00000000000000bb") is None
    async with asyncio.timeout(5):  # the writer / connection is free again
        await db.execute("insert_workspace", **_workspace_params("ws_00000000000000cc"))


async def test_a_unique_violation_is_a_constraint_violation(db: Database) -> None:
    await db.execute("insert_workspace", **_workspace_params("ws_00000000000000dd"))
    with pytest.raises(ConstraintViolation):
        await db.execute("insert_workspace", **_workspace_params("ws_00000000000000dd"))


async def test_an_unknown_query_name_is_reported(db: Database) -> None:
    with pytest.raises(UnknownQuery, match="no query named 'nope'"):
        await db.fetch_one("nope")


async def test_many_concurrent_write_transactions_never_see_a_lock_error(db: Database) -> None:
    async def write(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("insert_workspace", **_workspace_params(f"ws_{i:016x}"))

    await asyncio.gather(*(write(i) for i in range(100)))
    assert len(await db.fetch_all("list_workspaces")) == 100


def test_named_queries_bind_parameters_for_both_drivers() -> None:
    parsed = parse(
        "-- name: one\n-- a comment: with a colon\n"
        "SELECT :a::text, :b, :a WHERE x = ':c';\n"
        "-- name: two\nUPDATE t SET y = :y RETURNING id;"
    )
    one = compile_query("one", parsed["one"])
    assert one.positional_sql == "SELECT $1::text, $2, $1 WHERE x = ':c'"
    assert one.params == ("a", "b")
    assert one.readonly and one.returns_rows
    two = compile_query("two", parsed["two"])
    assert not two.readonly and two.returns_rows


def test_a_query_defined_twice_in_a_file_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")


def _workspace_params(workspace_id: str) -> dict[str, object]:
    hashes = {
        f"{p}_token_hash": "x" for p in ("emailbison", "ghl", "unipile", "smartlead", "instantly")
    }
    optional = dict.fromkeys(
        (
            "emailbison_workspace_id",
            "emailbison_api_key",
            "emailbison_base_url",
            "ghl_location_id",
            "ghl_public_key",
            "unipile_account_id",
            "unipile_own_id",
            "unipile_secret_hash",
            "smartlead_secret_hash",
            "instantly_secret_hash",
            "slack_channel",
        )
    )
    return {
        "id": workspace_id,
        "name": "n",
        "auto_send": False,
        "now": dt.datetime.now(dt.UTC),
        **hashes,
        **optional,
    }

"""The AI client (clients/ai.py): the real openai SDK against a fake server, rows in the real
``ai_interactions`` table on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.ai import (
    AIClient,
    ai_source,
    current_ai_source,
    remaining_budget,
    time_budget,
)
from gateway.workspaces import CreatedWorkspace
from sql import Database
from tests.conftest import count, rows
from tests.fakes import FakeServer, Reply, chat_completion, closed_port_url

COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
async def ai(fake_openai: FakeServer, db: Database) -> AsyncIterator[AIClient]:
    client = AIClient.from_settings(
        api_key="sk-test-key",
        base_url=f"{fake_openai.url}/v1",
        model="gpt-4o-mini",
        timeout_s=10,
        db=db,
    )
    try:
        yield client
    finally:
        await client.close()


async def interactions(database_url: str) -> list[dict[str, Any]]:
    return await rows(database_url, "SELECT * FROM ai_interactions ORDER BY id")


async def test_a_good_answer_records_tokens_and_latency(
    ai: AIClient, fake_openai: FakeServer, database_url: str, workspace: CreatedWorkspace
) -> None:
    fake_openai.script(
        "POST",
        COMPLETIONS,
        Reply(json=chat_completion("Sounds good.", prompt_tokens=30, completion_tokens=4)),
    )
    with ai_source("background_job:EMAIL_INBOUND_POST_PROCESS"):
        result = await ai.complete(
            purpose="draft_reply", system="Be brief.", prompt="Reply", workspace_id=workspace.id
        )
    assert result.status == "ok"
    assert result.text == "Sounds good."
    (sent,) = fake_openai.requests("POST", COMPLETIONS)
    assert sent.headers["Authorization"] == "Bearer sk-test-key"
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.json["messages"][0] == {"role": "system", "content": "Be brief."}
    (row,) = await interactions(database_url)
    assert row["status"] == "ok"
    assert row["source"] == "background_job:EMAIL_INBOUND_POST_PROCESS"
    assert row["purpose"] == "draft_reply"
    assert row["model"] == "gpt-4o-mini"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (30, 4)
    assert row["latency_ms"] >= 0
    assert row["error"] is None
    assert row["workspace_id"] == workspace.id


async def test_a_slow_answer_beyond_the_budget_is_a_timeout(
    ai: AIClient, fake_openai: FakeServer, database_url: str
) -> None:
    fake_openai.script("POST", COMPLETIONS, Reply(json=chat_completion(), delay_s=5))
    started = time.monotonic()
    with time_budget(0.5):
        result = await ai.complete(purpose="sentiment", system="s", prompt="p", workspace_id=None)
    assert time.monotonic() - started < 2
    assert result.status == "timeout"
    assert result.error_class == "timeout"
    (row,) = await interactions(database_url)
    assert row["status"] == "timeout"
    assert row["source"] == "unknown"
    assert row["prompt_tokens"] is None
    assert fake_openai.count() == 1  # the SDK's own retries are off


async def test_a_500_is_an_error_and_is_not_retried(
    ai: AIClient, fake_openai: FakeServer, database_url: str
) -> None:
    fake_openai.script(
        "POST",
        COMPLETIONS,
        Reply(500, json={"error": {"message": "boom", "type": "server_error", "code": None}}),
    )
    result = await ai.complete(purpose="sentiment", system="s", prompt="p", workspace_id=None)
    assert result.status == "error"
    assert result.error_class == "http_status"
    (row,) = await interactions(database_url)
    assert row["status"] == "error"
    assert row["error"] == "status 500 server_error"
    assert fake_openai.count() == 1


async def test_connection_refused_is_an_error_of_its_own_class(
    db: Database, database_url: str
) -> None:
    client = AIClient.from_settings(
        api_key="sk-test", base_url=f"{closed_port_url()}/v1", model="m", timeout_s=5, db=db
    )
    try:
        result = await client.complete(purpose="p", system="s", prompt="p", workspace_id=None)
    finally:
        await client.close()
    assert (result.status, result.error_class) == ("error", "connection")
    (row,) = await interactions(database_url)
    assert row["status"] == "error"


async def test_a_spent_budget_records_a_timeout_without_calling(
    ai: AIClient, fake_openai: FakeServer, database_url: str
) -> None:
    with time_budget(0):
        result = await ai.complete(purpose="p", system="s", prompt="p", workspace_id=None)
    assert result.status == "timeout"
    assert fake_openai.count() == 0
    assert [r["status"] for r in await interactions(database_url)] == ["timeout"]


async def test_a_caller_that_cancels_still_gets_its_row(
    ai: AIClient, fake_openai: FakeServer, database_url: str
) -> None:
    fake_openai.script("POST", COMPLETIONS, Reply(json=chat_completion(), delay_s=5))
    task = asyncio.create_task(
        ai.complete(purpose="draft_reply", system="s", prompt="p", workspace_id=None)
    )
    await fake_openai.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await interactions(database_url)
    assert (row["status"], row["error"]) == ("error", "cancelled")


async def test_no_api_key_turns_ai_off_and_writes_nothing(db: Database, database_url: str) -> None:
    client = AIClient.from_settings(
        api_key="", base_url="http://127.0.0.1:9/v1", model="m", timeout_s=5, db=db
    )
    assert not client.enabled
    result = await client.complete(purpose="p", system="s", prompt="p", workspace_id=None)
    await client.close()
    assert result.status == "disabled"
    assert await count(database_url, "ai_interactions") == 0


def test_ai_source_nests_and_restores() -> None:
    assert current_ai_source() == "unknown"
    with ai_source("background_job:DRAFT_SEND"):
        with ai_source("cron:context_packs"):
            assert current_ai_source() == "cron:context_packs"
        assert current_ai_source() == "background_job:DRAFT_SEND"
    assert current_ai_source() == "unknown"


async def test_ai_source_follows_into_tasks() -> None:
    async def seen() -> str:
        return current_ai_source()

    with ai_source("background_job:DRAFT_SEND"):
        assert await asyncio.create_task(seen()) == "background_job:DRAFT_SEND"


def test_nested_budgets_keep_the_earlier_deadline() -> None:
    assert remaining_budget() is None
    with time_budget(1.0):
        with time_budget(30.0):
            inner = remaining_budget()
            assert inner is not None and inner <= 1.0
        with time_budget(0.2):
            inner = remaining_budget()
            assert inner is not None and inner <= 0.2
        outer = remaining_budget()
        assert outer is not None and 0.2 < outer <= 1.0
    assert remaining_budget() is None

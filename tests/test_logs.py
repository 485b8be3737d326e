from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from gateway import logs
from gateway.logs import JsonFormatter
from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import ConstraintViolation, connect
from sql.errors import classify


def render(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("hookgate.test", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_is_one_json_object_with_the_extra_fields() -> None:
    line = render("dedupe hit", event="LEAD_REPLIED", message_id=4)
    assert line["msg"] == "dedupe hit"
    assert line["level"] == "info"
    assert line["event"] == "LEAD_REPLIED" and line["message_id"] == 4


def test_secrets_never_appear() -> None:
    line = render(
        "calling https://api.example.test/x?token=abc123&api_key=k9 with Bearer sk-live-1",
        token="abc123",
        smartlead_secret="s3",
        authorization="Bearer sk-live-1",
    )
    text = json.dumps(line)
    for secret in ("abc123", "k9", "sk-live-1", "s3"):
        assert secret not in text


async def test_the_row_values_a_database_error_quotes_never_appear(postgres_url: str) -> None:
    """What the lead identity attach logs when another lead holds the phone: PostgreSQL's own
    unique-violation text, whose DETAIL quotes the phone, as the port translates it."""
    db = await connect(postgres_url)
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    await db.close()
    conn = await asyncpg.connect(postgres_url)
    insert = "INSERT INTO leads (workspace_id, phone, email) VALUES ($1, $2, $3)"
    phone, other_phone, email = "+15550001111", "+15550002222", "third@example.com"
    try:
        await conn.execute(insert, workspace.id, phone, "first@example.com")
        with pytest.raises(asyncpg.UniqueViolationError) as raised:
            await conn.execute(insert, workspace.id, phone, "second@example.com")
        with pytest.raises(asyncpg.NotNullViolationError) as no_workspace:
            await conn.execute(insert, None, other_phone, email)
    finally:
        await conn.close()
    violation = classify(raised.value)
    assert phone in str(violation)  # the port's message carries the detail …
    try:
        raise violation from raised.value
    except ConstraintViolation:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "hookgate.ingest",
        logging.INFO,
        __file__,
        1,
        "lead identity kept by another lead",
        None,
        exc_info,
    )
    record.__dict__.update(workspace_id=workspace.id, lead_id=2, error=str(violation))
    not_null = render("insert failed", error=str(classify(no_workspace.value)))
    text = JsonFormatter().format(record) + json.dumps(not_null)
    for value in (phone, other_phone, email):
        assert value not in text  # … the log line does not
    line = json.loads(JsonFormatter().format(record))
    assert "leads_workspace_id_phone_key" in line["error"]  # what went wrong is still said
    assert "Key (workspace_id, phone)=(***) already exists." in line["error"]
    assert "Failing row contains (***)" in str(not_null["error"])


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger's handlers and level, put back after a test that configures them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_logs_go_to_the_stderr_of_the_moment_not_a_closed_one(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``hookgate`` commands run in-process by tests configure logging while pytest captures
    stderr; that capture is closed when the test ends, and records logged later (by the next
    test, by a pool's background task) must not be written into it."""
    configured_under = io.StringIO()
    monkeypatch.setattr("sys.stderr", configured_under)
    logs.configure("INFO")
    logging.getLogger("hookgate.test").info("first")
    configured_under.close()

    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    logging.getLogger("hookgate.clients.http").warning("outbound_failure", extra={"attempt": 1})
    [line] = later.getvalue().splitlines()
    assert json.loads(line)["msg"] == "outbound_failure"
    assert "Logging error" not in later.getvalue()

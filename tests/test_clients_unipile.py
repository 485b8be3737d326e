"""The Unipile client (clients/unipile.py) against a fake Unipile on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from clients.http import HttpPolicy, RetryPolicy
from clients.unipile import AccountCheck, UnipileClient
from tests.conftest import fixture_json
from tests.fakes import UNIPILE_OWNER_ID, FakeServer, Reply, closed_port_url, unipile_account

ACCOUNT = "dfXlh46vQYCsMbVarumWlg"
ACCOUNT_PATH = f"/api/v1/accounts/{ACCOUNT}"


@pytest.fixture
async def http() -> AsyncIterator[HttpPolicy]:
    async with aiohttp.ClientSession() as session:
        yield HttpPolicy(session, RetryPolicy(base_delay_s=0.01, max_delay_s=0.05))


def unipile_at(url: str, http: HttpPolicy, api_key: str = "unipile-test-key") -> UnipileClient:
    return UnipileClient(http, base_url=url, api_key=api_key, timeout_s=0.4)


async def test_an_ok_account_is_connected(fake_unipile: FakeServer, http: HttpPolicy) -> None:
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert check == AccountCheck(True, own_id=UNIPILE_OWNER_ID)
    (seen,) = fake_unipile.requests("GET", ACCOUNT_PATH)
    assert seen.headers["X-API-KEY"] == "unipile-test-key"


async def test_401_disconnected_account_is_disconnected_with_its_reason(
    fake_unipile: FakeServer, http: HttpPolicy
) -> None:
    body = fixture_json("unipile/api_error_401_disconnected_account.json")
    fake_unipile.script("GET", ACCOUNT_PATH, Reply(401, json=body))
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert check == AccountCheck(False, "errors/disconnected_account")
    assert fake_unipile.count() == 1


async def test_a_status_other_than_ok_is_disconnected(
    fake_unipile: FakeServer, http: HttpPolicy
) -> None:
    fake_unipile.script("GET", ACCOUNT_PATH, Reply(json=unipile_account("CREDENTIALS")))
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert check == AccountCheck(False, "status:CREDENTIALS", own_id=UNIPILE_OWNER_ID)


@pytest.mark.parametrize(
    "params",
    [None, {}, {"im": None}, {"im": {"id": 42}}, {"im": {"id": " "}}, {"mail": {"id": "a@b.c"}}],
)
async def test_an_account_that_does_not_name_its_owner_is_still_read(
    fake_unipile: FakeServer, http: HttpPolicy, params: object
) -> None:
    body = {**unipile_account(), "connection_params": params}
    fake_unipile.script("GET", ACCOUNT_PATH, Reply(json=body))
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert check == AccountCheck(True, own_id=None)


async def test_a_401_about_our_api_key_says_nothing_about_the_account(
    fake_unipile: FakeServer, http: HttpPolicy
) -> None:
    fake_unipile.script(
        "GET", ACCOUNT_PATH, Reply(401, json={"status": 401, "type": "errors/missing_credentials"})
    )
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert check.reason is None
    assert check.error_class == "http_status"


async def test_a_timeout_says_nothing_about_the_account(
    fake_unipile: FakeServer, http: HttpPolicy
) -> None:
    fake_unipile.script("GET", ACCOUNT_PATH, Reply(json=unipile_account(), delay_s=3))
    check = await unipile_at(fake_unipile.url, http).check_account(ACCOUNT)
    assert (check.reason, check.error_class) == (None, "timeout")
    assert fake_unipile.count() == 3  # a GET: retried


async def test_a_refused_connection_says_nothing_about_the_account(http: HttpPolicy) -> None:
    check = await unipile_at(closed_port_url(), http).check_account(ACCOUNT)
    assert (check.reason, check.error_class) == (None, "connection")


async def test_send_message_posts_the_text_once(fake_unipile: FakeServer, http: HttpPolicy) -> None:
    result = await unipile_at(fake_unipile.url, http).send_message("chat-1", "Tuesday works")
    assert (result.ok, result.provider_message_id) == (True, "msg-fake-1")
    (sent,) = fake_unipile.requests("POST", "/api/v1/chats/chat-1/messages")
    assert sent.form == {"text": "Tuesday works"}


async def test_send_message_is_never_retried(fake_unipile: FakeServer, http: HttpPolicy) -> None:
    fake_unipile.script("POST", "/api/v1/chats/*/messages", Reply(503), Reply(201))
    result = await unipile_at(fake_unipile.url, http).send_message("chat-1", "hi")
    assert (result.ok, result.error_class, result.error) == (False, "http_status", "status 503")
    assert fake_unipile.count() == 1


async def test_unset_settings_turn_unipile_off(http: HttpPolicy) -> None:
    unipile = unipile_at("", http)
    assert not unipile.enabled
    check = await unipile.check_account(ACCOUNT)
    assert (check.connected, check.reason, check.error_class) == (False, None, "disabled")
    sent = await unipile.send_message("chat-1", "hi")
    assert sent.error_class == "disabled"

"""The embedded default's way in on a first run: a first ``hookgate serve`` on SQLite without
HOOKGATE_ADMIN_TOKEN makes an admin token, keeps only its hash and prints a sign-in URL once;
``hookgate admin reset-token`` replaces it; PostgreSQL keeps requiring the setting."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import async_playwright

from gateway.admin_token import first_admin_token
from gateway.settings import Settings
from sql import connect
from sql.migrations import discover
from tests.browser import launch_chromium
from tests.conftest import LiveServer, rows, start_server, stop_server
from tests.test_cli import hookgate

SIGN_IN = re.compile(r"(https?://[\w.:-]+)/status/login\?token=([\w-]+)")


def serve(database_url: str, stdout: Path, **env: str) -> LiveServer:
    """``hookgate serve`` with no admin token in its environment, its stdout kept in a file."""
    settings_env = {"DATABASE_URL": database_url, "HOOKGATE_ADMIN_TOKEN": "", "LOG_LEVEL": "INFO"}
    with stdout.open("wb") as out:
        return start_server({**settings_env, **env}, stdout=out)


def sign_in(url: str) -> httpx2.Response:
    """Follow a sign-in URL as a browser would: the session cookie, then the status page."""
    with httpx2.Client(follow_redirects=True, timeout=10) as browser:
        return browser.get(url)


def database_files_holding(folder: Path, secret: str) -> list[str]:
    """Which of the SQLite database's files (main, WAL, shared memory) hold ``secret``."""
    files = sorted(folder.glob("hookgate.db*"))
    assert files
    return [path.name for path in files if secret.encode() in path.read_bytes()]


async def test_a_first_serve_prints_a_sign_in_url_once_and_stores_only_its_hash(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'hookgate.db'}"
    first = serve(database_url, tmp_path / "first.out")
    try:
        [(base_url, token)] = SIGN_IN.findall((tmp_path / "first.out").read_text())
        assert base_url == first.base_url
        with httpx2.Client(base_url=first.base_url, timeout=10) as browser:
            signed_in = browser.get(f"/status/login?token={token}")
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/status"
            page = browser.get("/status")
            assert page.status_code == 200 and "Sign out" in page.text
            session = dict(browser.cookies)
        wrong = sign_in(f"{first.base_url}/status/login?token=not-{token}")
        assert wrong.status_code == 401 and "That is not the admin token." in wrong.text
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx2.get(f"{first.base_url}/api/quarantine", headers=bearer).status_code == 200
    finally:
        stop_server(first)

    [stored] = await rows(database_url, "SELECT token_hash FROM admin_token")
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert database_files_holding(tmp_path, token) == []

    second = serve(database_url, tmp_path / "second.out")
    try:
        assert "token=" not in (tmp_path / "second.out").read_text()
        again = sign_in(f"{second.base_url}/status/login?token={token}")
        assert again.status_code == 200 and "Sign out" in again.text
        # The session key is the process's own (a hash in the database signs nobody in), so
        # the first server's session cookie does not outlive it.
        stale = httpx2.get(f"{second.base_url}/status", cookies=session)
        assert stale.status_code == 401 and 'name="token"' in stale.text
    finally:
        stop_server(second)


async def test_reset_token_replaces_the_token_for_the_next_start(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'hookgate.db'}"
    db = await connect(database_url)
    try:
        await db.apply_migrations(discover(db.dialect))
        old_token = await first_admin_token(db, Settings(database_url=database_url))
    finally:
        await db.close()
    assert old_token is not None

    reset = hookgate(
        Settings(database_url=database_url), "admin", "reset-token", HOOKGATE_ADMIN_TOKEN=""
    )
    assert reset.returncode == 0, reset.stderr
    [(base_url, new_token)] = SIGN_IN.findall(reset.stdout)
    assert base_url == "https://hooks.example.test"  # HOOKGATE_PUBLIC_URL
    assert new_token != old_token

    server = serve(database_url, tmp_path / "serve.out")
    try:
        assert "token=" not in (tmp_path / "serve.out").read_text()
        assert sign_in(f"{server.base_url}/status/login?token={old_token}").status_code == 401
        assert sign_in(f"{server.base_url}/status/login?token={new_token}").status_code == 200
    finally:
        stop_server(server)


async def test_two_first_starts_at_once_make_one_token(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hookgate.db'}")
    databases = [await connect(settings.database_url) for _ in range(2)]
    try:
        await databases[0].apply_migrations(discover("sqlite"))
        made = await asyncio.gather(*(first_admin_token(db, settings) for db in databases))
    finally:
        for db in databases:
            await db.close()
    [token] = [t for t in made if t is not None]
    [stored] = await rows(settings.database_url, "SELECT token_hash FROM admin_token")
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()


async def test_the_setting_is_the_admin_token_and_nothing_is_made(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'hookgate.db'}"
    server = serve(database_url, tmp_path / "serve.out", HOOKGATE_ADMIN_TOKEN="set-by-operator")
    try:
        assert "token=" not in (tmp_path / "serve.out").read_text()
        url = f"{server.base_url}/status/login?token=set-by-operator"
        assert sign_in(url).status_code == 200
    finally:
        stop_server(server)
    assert await rows(database_url, "SELECT * FROM admin_token") == []
    refused = hookgate(
        Settings(database_url=database_url),
        "admin",
        "reset-token",
        HOOKGATE_ADMIN_TOKEN="set-by-operator",
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert "HOOKGATE_ADMIN_TOKEN is set" in refused.stderr


async def test_postgresql_without_the_setting_keeps_the_admin_api_and_status_page_off(
    postgres_url: str, tmp_path: Path
) -> None:
    server = serve(postgres_url, tmp_path / "serve.out")
    try:
        assert "token=" not in (tmp_path / "serve.out").read_text()
        for path in ("/status", "/status/login?token=anything"):
            off = httpx2.get(f"{server.base_url}{path}")
            assert off.status_code == 404 and "HOOKGATE_ADMIN_TOKEN is unset" in off.text
        api = httpx2.get(f"{server.base_url}/api/quarantine", headers={"Authorization": "Bearer x"})
        assert api.status_code == 403
    finally:
        stop_server(server)
    refused = hookgate(
        Settings(database_url=postgres_url), "admin", "reset-token", HOOKGATE_ADMIN_TOKEN=""
    )
    assert refused.returncode == 2
    assert "on PostgreSQL the admin token is the setting HOOKGATE_ADMIN_TOKEN" in refused.stderr


@pytest.mark.browser
async def test_the_printed_url_signs_chromium_in(tmp_path: Path) -> None:
    server = serve(f"sqlite:///{tmp_path / 'hookgate.db'}", tmp_path / "serve.out")
    try:
        [(base_url, token)] = SIGN_IN.findall((tmp_path / "serve.out").read_text())
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                page = await browser.new_page()
                await page.goto(f"{base_url}/status/login?token={token}")
                assert page.url == f"{base_url}/status"
                await page.locator("header button", has_text="Sign out").wait_for(timeout=10_000)
                await page.reload()
                assert await page.locator("#integrations").count() == 1
            finally:
                await browser.close()
    finally:
        stop_server(server)

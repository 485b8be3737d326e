"""Debian's Chromium, headless, driven by playwright (never ``playwright install``: the machine
has no network for a browser download).  Screenshots go to ``test-artifacts/`` (kept by CI)."""

from __future__ import annotations

from playwright.async_api import Browser, Playwright

from tests.conftest import ROOT
from tests.system import require_program

CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; without the background-networking flags it keeps trying
# to reach Google's hosts, which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


async def launch_chromium(playwright: Playwright) -> Browser:
    executable = require_program(CHROMIUM, "chromium", "to open hookgate's pages in a browser")
    return await playwright.chromium.launch(
        executable_path=executable, args=CHROMIUM_ARGS, headless=True
    )

"""System programs the tests drive (installed by ``scripts/test-setup``).  A test whose program is
missing fails saying which Debian package brings it and what the test needs it for; it is never
skipped."""

from __future__ import annotations

import os

import pytest


def require_program(path: str, package: str, needed_for: str) -> str:
    """``path`` when it is an executable file, else the test fails naming ``package``."""
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: this test needs Debian's {package} {needed_for}. "
            f"scripts/test-setup installs it (as root: apt-get install {package}).",
            pytrace=False,
        )
    return path

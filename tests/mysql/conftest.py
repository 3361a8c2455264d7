"""Fixtures for the MySQL lock tests: a real MariaDB for the whole session.

``FERROLOCK_TEST_MYSQL_URL`` points the tests at an existing server instead (tests that must
restart or reconfigure the server then skip). Without it, ``tests/services/mariadb.py`` starts a
throwaway server. When ``CI=true`` a server that cannot start fails the tests, never skips them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "helpers"))

from services.mariadb import MariaDB, ServiceError  # noqa: E402


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"MariaDB is required in CI: {why}", pytrace=False)
    pytest.skip(f"no MariaDB: {why}")


class Server:
    """The server under test: its URL, and our own MariaDB object when we started it."""

    def __init__(self, url: str, own: Optional[MariaDB]) -> None:
        self.url = url
        self.own = own

    def require_own(self) -> MariaDB:
        if self.own is None:
            pytest.skip("needs a server the tests started (FERROLOCK_TEST_MYSQL_URL is set)")
        return self.own

    def url_with(self, **options: object) -> str:
        sep = "&" if "?" in self.url else "?"
        return self.url + sep + "&".join(f"{k}={v}" for k, v in options.items())


_started: dict[str, object] = {}


def _start(galera: bool) -> MariaDB:
    key = "galera" if galera else "plain"
    got = _started.get(key)
    if isinstance(got, MariaDB):
        return got
    if isinstance(got, str):
        _unavailable(got)
    server = MariaDB(galera=galera)
    try:
        server.start()
    except (ServiceError, OSError) as e:
        server.cleanup()
        _started[key] = str(e)
        _unavailable(str(e))
    _started[key] = server
    return server


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Server]:
    url = os.environ.get("FERROLOCK_TEST_MYSQL_URL")
    if url:
        yield Server(url, None)
        return
    server = _start(galera=False)
    try:
        yield Server(server.url, server)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def galera_server() -> Iterator[MariaDB]:
    server = _start(galera=True)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def mysql_url(mysql_server: Server) -> str:
    return mysql_server.url


@pytest.fixture
def lock_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses (tests share the server)."""
    return f"t-{os.getpid()}-{request.node.name}"[:60]

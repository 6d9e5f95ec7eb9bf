"""Shared fixtures: real databases (SQLite always, PostgreSQL with --postgres), engine, clock."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from storage.unit_of_work import Database
from tests.support.driver import EngineChat
from tests.support.postgres_db import fresh_postgres
from tests.support.template_db import db, db_templates  # noqa: F401  (the shared `db` fixture)
from storage.bootstrap import prepare_database


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--postgres",
        default=os.environ.get("TEST_POSTGRES_URL"),
        help="PostgreSQL admin URL (postgresql+asyncpg://user@host:port/postgres); storage tests also run there",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "sqlite_only: the test is about the SQLite driver; not run on PostgreSQL")
    config.addinivalue_line("markers", "postgres_only: the test is about PostgreSQL's concurrency; not run on SQLite")
    if os.environ.get("CI") and not config.getoption("--postgres"):
        raise pytest.UsageError("CI must run the PostgreSQL tests: pass --postgres or set TEST_POSTGRES_URL")


_skipped_in_ci: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if os.environ.get("CI") and report.skipped:
        _skipped_in_ci.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    """Under CI nothing may skip (a PostgreSQL test that skips would hide a gap)."""
    if os.environ.get("CI") and _skipped_in_ci and exitstatus == 0:
        print("\ntests skipped under CI (not allowed): " + ", ".join(_skipped_in_ci))
        session.exitstatus = 1


def pytest_generate_tests(metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker
        backends = [] if marked("postgres_only") else ["sqlite"]
        if metafunc.config.getoption("--postgres") and not marked("sqlite_only"):
            backends.append("postgres")
        metafunc.parametrize("backend", backends)


class FakeClock:
    """Time passed in, not patched: tests move it by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture(autouse=True)
def _fresh_reference_cache():
    """Each test has its own database: nothing cached from another one may leak in."""
    from storage.repositories.reference import forget_reference_cache

    forget_reference_cache()
    yield
    forget_reference_cache()


@pytest.fixture(scope="session")
def emulator():
    """One Telegram Bot API emulator process for the whole session (each test uses fresh chat ids)."""
    from tests.support.telegram_emulator import TelegramEmulator

    instance = TelegramEmulator()
    instance.start_sync()
    yield instance
    instance.stop_sync()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def database_url(backend, tmp_path, request):
    """A fresh database URL for one test (SQLite file, or a new PostgreSQL database)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        return
    async with fresh_postgres(request.config.getoption("--postgres")) as url:
        yield url


@pytest.fixture
async def postgres_url(request):
    """A fresh PostgreSQL database for tests that only make sense there (CI always provides it)."""
    admin_url = request.config.getoption("--postgres")
    if not admin_url:
        pytest.skip("needs --postgres (CI always passes it)")
    async with fresh_postgres(admin_url) as url:
        yield url


async def prepare(url: str) -> Database:
    """Migrate a database and load the demo reference data."""
    return await prepare_database(url)


@pytest.fixture
def engine(db, clock) -> DialogEngine:
    return DialogEngine(db, build_registry(), clock=clock)


@pytest.fixture
def chat(engine):
    """A factory of people talking to the engine: `chat(user_id)`."""

    def make(user_id: str | int = 1001, transport: str = "console") -> EngineChat:
        return EngineChat(engine, user_id, transport)

    return make

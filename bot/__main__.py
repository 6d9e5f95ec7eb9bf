"""Command line: `python -m bot run | chat | migrate | import-schools | invite | ...` (`--help` on each)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

from bot.settings import Settings, SettingsError, load_settings

NO_CHANNEL = (
    "No channel is configured: set TELEGRAM__TOKEN (from @BotFather) or VK__TOKEN and VK__GROUP_ID "
    "in the environment or .env to connect the bot."
)


# Libraries whose DEBUG output carries message texts or SQL parameters (personal data).
QUIET_LOGGERS = ("aiogram.event", "aiosqlite", "asyncpg", "alembic", "sqlalchemy.engine", "vk_api", "urllib3")


def configure_logging(level: str) -> None:
    """Log ids and events only; handlers never log message texts or names, and the libraries that
    would (at DEBUG) are held at WARNING whatever LOG_LEVEL says."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    """Serve every configured channel; without one, a console chat in a terminal."""
    from bot.wiring import build_app

    has_telegram = settings.telegram.token is not None
    has_vk = settings.vk.token is not None and settings.vk.group_id is not None
    if not (has_telegram or has_vk):
        print(NO_CHANNEL, file=sys.stderr)
        if not sys.stdin.isatty():
            return 2
        print("Starting the console channel on the demo data (type /quit to leave).", file=sys.stderr)
        return await cmd_chat(settings, args)
    app = await build_app(settings)
    # What start-up built (modules, flows, mappers, validators) lives as long as the process:
    # keep it out of the garbage collector's full passes, which otherwise walk it all (~0.2 s,
    # a pause every update in flight waits for; bench.load shows it in the p99).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        try:
            loop.add_signal_handler(getattr(signal, name), stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
            pass
    return await serve_channels(app, stop)


async def serve_channels(app, stop: asyncio.Event) -> int:
    """Start the configured channels, the HTTP side and the scheduler; on `stop` shut down gracefully:
    stop taking updates, finish those in flight, then stop the scheduler (the outbox stays consistent:
    every row is marked right after its send)."""
    from bot.wiring import build_telegram
    from handlers.web import build_web_app, serve

    settings = app.settings
    log = logging.getLogger(__name__)
    runners: list[asyncio.Task] = []
    intakes = []
    channels: dict[str, object] = {}
    web_app = build_web_app(app.db, channels)
    if settings.telegram.token is not None:
        bot, _dispatcher, intake = build_telegram(app)
        intakes.append(intake)
        if settings.telegram.mode == "webhook":
            from handlers.telegram.polling import ALLOWED
            from handlers.telegram.webhook import WEBHOOK_PATH

            intake.install(web_app)
            await intake.replay_pending()
            await bot.set_webhook(
                settings.telegram.webhook_url.rstrip("/") + WEBHOOK_PATH,
                secret_token=settings.telegram.webhook_secret.get_secret_value(),
                allowed_updates=ALLOWED,
            )
            channels["telegram"] = lambda: not intake._stopping.is_set()
            # Updates a killed replica acknowledged but never handled: another replica takes them.
            runners.append(asyncio.create_task(intake.keep_replaying(), name="telegram journal replay"))
        else:
            task = asyncio.create_task(intake.run(), name="telegram")
            runners.append(task)
            channels["telegram"] = lambda: not task.done()
        log.info("telegram channel started (%s)", settings.telegram.mode)
    if settings.vk.token is not None and settings.vk.group_id is not None:
        try:
            from handlers.vk.adapter import build_vk_adapter
        except ImportError:
            log.error("VK is configured, but this build has no VK adapter")
        else:
            adapter = build_vk_adapter(settings, app.engine, app.db)
            await adapter.start()
            app.closers.append(adapter.stop)
            channels["vk"] = lambda: getattr(adapter, "running", True)
            log.info("vk channel started")
    web_runner = None
    status = 0
    if settings.http.enabled:
        try:
            web_runner, port = await serve(web_app, settings.http.host, settings.http.port)
        except OSError as error:
            print(f"Cannot listen on HTTP__PORT={settings.http.port} ({error.strerror}); choose a free port "
                  "or set HTTP__ENABLED=false.", file=sys.stderr)
            status = 2
            stop.set()
        else:
            log.info("http server on port %s", port)
    _start_scheduler(app)
    await stop.wait()
    log.info("stopping: no new updates, finishing those in flight")
    for intake in intakes:
        intake.stop()
    if web_runner is not None:
        await web_runner.cleanup()
    await asyncio.gather(*runners, return_exceptions=True)
    for intake in intakes:
        await intake.drain()
    await app.close()  # stops the scheduler too: sends in flight finish and are recorded
    return status


def _start_scheduler(app):
    """The scheduler of background jobs (it registers its own clean stop with the app)."""
    from scheduler.jobs import start_for_app

    return start_for_app(app)


async def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    """The console channel: the same flows in the terminal."""
    from bot.wiring import build_app
    from handlers.console.chat import console_chat

    app = await build_app(settings)
    try:
        await console_chat(app.engine, getattr(args, "user", None) or "console-demo")
    finally:
        await app.close()
    return 0


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import create_engine
    from storage.migrate import downgrade, upgrade

    engine = create_engine(settings.db.url)
    try:
        if args.revision.startswith("-") or args.downgrade:
            await downgrade(engine, args.revision)
        else:
            await upgrade(engine, args.revision)
    finally:
        await engine.dispose()
    print(f"database at {args.revision}")
    return 0


class CommandFailed(Exception):
    """A command's work was refused: the message is printed, nothing is saved, the exit status is 1."""


async def in_one_unit(settings: Settings, work, *, refused: tuple[type[Exception], ...], say: str):
    """Run `work(uow)` on the app's database and commit; a refused error prints `say` + the error."""
    from bot.wiring import build_app

    app = await build_app(settings)
    try:
        async with app.db.unit() as uow:
            try:
                result = await work(uow)
            except refused as error:
                raise CommandFailed(f"{say}{error}") from None
            await uow.commit()
            return result
    finally:
        await app.close()


async def on_bare_database(settings: Settings, work):
    """Run `work(database)` on the migrated database without starting the bot (data transfer)."""
    from storage.db import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.unit_of_work import Database

    engine = create_engine(settings.db.url)
    try:
        await upgrade(engine)
        return await work(Database(session_factory(engine)))
    finally:
        await engine.dispose()


async def cmd_import_schools(settings: Settings, args: argparse.Namespace) -> int:
    from storage.services.reference import ReferenceError, import_reference

    report = await in_one_unit(
        settings.model_copy(update={"demo_data": False}),
        lambda uow: import_reference(uow, Path(args.file), municipality_code=args.municipality),
        refused=(ReferenceError, OSError), say="import failed, nothing saved: ",
    )
    print(f"imported: {report.municipalities} new municipalities, {report.organisations} new organisations")
    return 0


async def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    from storage.models import utcnow
    from storage.services.errors import NotFound
    from storage.services.invites import create_invite

    code = await in_one_unit(
        settings,
        lambda uow: create_invite(uow, role=args.role, now=utcnow(), municipality_code=args.municipality,
                                  region=args.region, days=args.days),
        refused=(ValueError, NotFound), say="no invite created: ",
    )
    print(f"invite code for {args.role} (single use, valid {args.days} days): {code}")
    return 0


async def cmd_import_events(settings: Settings, args: argparse.Namespace) -> int:
    from storage.models import utcnow
    from storage.services.events import EventImportError, import_events

    report = await in_one_unit(
        settings, lambda uow: import_events(uow, Path(args.file), args.municipality, utcnow()),
        refused=(EventImportError,), say="import failed, nothing saved:\n",
    )
    print(f"imported: {report}")
    return 0


async def cmd_export_data(settings: Settings, args: argparse.Namespace) -> int:
    from storage.services.transfer import dump

    counts = await on_bare_database(settings, lambda database: dump(database, Path(args.file)))
    print(f"exported {sum(counts.values())} rows from {len(counts)} tables to {args.file}")
    return 0


async def cmd_import_data(settings: Settings, args: argparse.Namespace) -> int:
    from storage.services.transfer import TransferError, load

    try:
        counts = await on_bare_database(
            settings, lambda database: load(database, Path(args.file), replace=args.replace)
        )
    except TransferError as error:
        raise CommandFailed(f"import failed, nothing changed: {error}") from None
    print(f"imported {sum(counts.values())} rows into {len(counts)} tables")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m bot", description="ММС bot for young teachers and mentors")
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the configured channels (Telegram, VK); console if none")
    run.set_defaults(handler=cmd_run)

    chat = commands.add_parser("chat", help="talk to the bot in this terminal as a demo user")
    chat.add_argument("--user", default="console-demo", help="the console user id (default: console-demo)")
    chat.set_defaults(handler=cmd_chat)

    migrate = commands.add_parser("migrate", help="apply database migrations (also done at start)")
    migrate.add_argument("revision", nargs="?", default="heads", help="target revision (default: heads)")
    migrate.add_argument("--downgrade", action="store_true", help="go down to the revision")
    migrate.set_defaults(handler=cmd_migrate)

    schools = commands.add_parser(
        "import-schools", help="load municipalities and organisations from YAML, or organisations from CSV"
    )
    schools.add_argument("file", help="a .yaml (municipalities with organisations) or .csv (municipality,name,kind)")
    schools.add_argument("--municipality", help="municipality code for CSV rows without one")
    schools.set_defaults(handler=cmd_import_schools)

    invite = commands.add_parser("invite", help="create a single-use invite code for a coordinator/regional/admin")
    invite.add_argument("--role", required=True, choices=["coordinator", "regional", "admin"])
    invite.add_argument("--municipality", help="municipality code (coordinators)")
    invite.add_argument("--region", help="region name (regional coordinators)")
    invite.add_argument("--days", type=int, default=14, help="days the code stays valid (default 14)")
    invite.set_defaults(handler=cmd_invite)

    events = commands.add_parser("import-events", help="import events from CSV or iCalendar (.ics) for a municipality")
    events.add_argument("file")
    events.add_argument("--municipality", required=True, help="municipality code")
    events.set_defaults(handler=cmd_import_events)

    export = commands.add_parser("export-data", help="dump all data (every table) to a JSON-lines file")
    export.add_argument("file")
    export.set_defaults(handler=cmd_export_data)

    load = commands.add_parser(
        "import-data", help="load a dump into this database (DB__URL), e.g. to move from SQLite to PostgreSQL"
    )
    load.add_argument("file")
    load.add_argument("--replace", action="store_true", help="delete what the target holds first")
    load.set_defaults(handler=cmd_import_data)

    for extend in _extensions():
        extend(commands)
    return root


def _extensions():
    """Commands contributed by feature modules (questionnaire export/import, digests)."""
    from bot import commands_digest, commands_surveys

    return [commands_surveys.register, commands_digest.register]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        return asyncio.run(args.handler(settings, args))
    except CommandFailed as failure:
        print(failure, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

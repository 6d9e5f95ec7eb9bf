"""Load benchmark of the Telegram channel, end to end through the Bot API emulator.

Run from the repository root::

    .venv/bin/python -m bench.load [--postgres URL] [--users 50] [--updates 5000] [--rounds 5] [--profile FILE [--profile-phase scenario] [--profile-backend PostgreSQL]]
    .venv/bin/python -m bench.load --breakdown 300 [--postgres URL]   # CPU per stage, one user; CPU per SQL statement by layer

One emulator process (npm `telegram-test-api` with our fixes) serves everything. For each backend
(a fresh SQLite file; a fresh PostgreSQL database when `--postgres` gives an admin URL):

1. Our bot, wired as `python -m bot run` wires it (`build_app` + `build_telegram`: the inbox journal
   before acknowledging, per-person order and update-id idempotency in the engine, 429 retries,
   the update timer), in this process, on a fresh database: the scenario, `users` users
   registering concurrently (and filling the young-teacher questionnaire via
   «📝 Анкета молодого педагога» when that flow is registered).
2. Throughput, in `--rounds` alternating rounds (`updates` split evenly): a bare aiogram echo bot
   with stock `start_polling` (a new one each round; our bot pauses its polling meanwhile), where
   each user sends texts and gets each one echoed; then our bot, where the same number of texts
   are typed as searches on the organisation screen, each getting exactly one reply. The ratio is
   the median of the rounds' ratios: on a noisy machine a burst elsewhere spoils one round, not
   the comparison. Each round also runs the echo bot answering every text with our organisation
   screen as our bot sent it (same text, same inline keyboard, sent the stock aiogram way): not
   the target, but it shows what a keyboard reply costs through aiogram's models (our bot sends
   its replies as JSON bodies instead: `handlers.telegram.session.call_json`).

Before each measured phase the garbage collector freezes what exists (the harness, the bot just
built), as `bot run` does after start-up, so neither bot's full collections walk the other's heap.

It prints p50/p95/p99 of the bot's handling time per update (`UpdateTimer`: the update entering the
dispatcher → the handler returning, which is after its reply was sent) and of the time the user
waits (the emulator's `date_ms` of the last message of the reply − the moment the user sent;
same machine clock), updates per second, the ratio to the echo baseline, and CPU per update.
Targets: p99 handling < 100 ms and ratio ≥ 0.5. Exit status 0 when every target passes.

How a simulated user waits for a reply: it sends one update, then waits until the bot has
finished handling that update (a per-chat signal from a benchmark-only dispatcher middleware,
identical for the echo bot and ours), then sends the next. Polling the emulator's chat log instead
would load the emulator (every poll scans its whole history) and add up to the poll interval to
each wait; the reply's time is still read from the emulator afterwards. The simulated users run in
this process, so their CPU (printed as "simulated users") is part of both runs.

Wall-clock figures depend on what else the machine runs: each phase prints how many cores the rest
of the machine kept busy (on PostgreSQL that includes the database server). CPU per update of this
process is the steadier figure; the echo/ours ratio of it is what the updates/s ratio approaches
when this process is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import cProfile
import contextlib
import contextvars
import functools
import gc
import importlib
import inspect
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

if __package__ in (None, ""):  # executed as `python bench/load.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Bot, Dispatcher, Router  # noqa: E402
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bot.settings import Settings  # noqa: E402
from bot.wiring import App, build_app, build_telegram  # noqa: E402
from handlers.telegram.timing import UpdateTimer  # noqa: E402
from storage.models import InboxUpdate, Member  # noqa: E402
from tests.support.postgres_db import fresh_postgres  # noqa: E402
from tests.support.telegram_emulator import BotMessage, EmulatorChat, TelegramEmulator  # noqa: E402

TARGET_P99 = 0.100  # seconds of the bot's own handling time
TARGET_RATIO = 0.5  # our updates/s over the bare echo bot's
REPLY_TIMEOUT = 60.0
RECENT = 4  # messages a simulated user reads back (a reply is a screen, perhaps after a notice or two)
SEARCHES = ["Кудрово", "Мурино", "Гимназия", "Янино"]  # each matches schools of the demo municipality
ASK_ORG = "Выберите вашу организацию"
MAIN_MENU = "Главное меню"
SURVEY_ITEM = "📝 Анкета молодого педагога"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


def spread(values: list[float]) -> str:
    """p50/p95/p99/max in milliseconds (values in seconds)."""
    if not values:
        return "no samples"
    p = [percentile(values, s) * 1000 for s in (0.50, 0.95, 0.99)]
    return f"p50 {p[0]:6.1f}  p95 {p[1]:6.1f}  p99 {p[2]:6.1f}  max {max(values) * 1000:6.1f} ms  (n={len(values)})"


@dataclass
class Cpu:
    """CPU seconds so far: this process (all threads / event-loop thread), the emulator, the machine."""

    process: float
    main: float
    emulator: float
    machine_busy: float

    @classmethod
    def now(cls, emulator_pid: int | None) -> "Cpu":
        return cls(time.process_time(), time.thread_time(), _proc_cpu(emulator_pid), _machine_busy())

    def __sub__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.process - other.process, self.main - other.main, self.emulator - other.emulator,
                   self.machine_busy - other.machine_busy)

    def __add__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.process + other.process, self.main + other.main, self.emulator + other.emulator,
                   self.machine_busy + other.machine_busy)


def _proc_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _machine_busy() -> float:
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK_TCK


@dataclass
class Phase:
    """One measured run: what was sent, how long it took, what it cost."""

    name: str
    updates: int
    seconds: float
    handling: list[float]
    waits: list[float]
    cpu: Cpu
    missing_replies: int = 0
    checks: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.updates / self.seconds if self.seconds else 0.0

    @classmethod
    def merged(cls, name: str, rounds: list["Phase"]) -> "Phase":
        """Several rounds as one phase: totals, all samples, every round's checks."""
        cpu = rounds[0].cpu
        for other in rounds[1:]:
            cpu = cpu + other.cpu
        return cls(
            name, sum(r.updates for r in rounds), sum(r.seconds for r in rounds),
            [x for r in rounds for x in r.handling], [x for r in rounds for x in r.waits], cpu,
            sum(r.missing_replies for r in rounds), [line for r in rounds for line in r.checks],
        )

    def cpu_line(self) -> str:
        n = max(self.updates, 1)
        c = self.cpu
        others = max(0.0, c.machine_busy - c.process - c.emulator)
        return (
            f"CPU per update: this process {c.process / n * 1000:.2f} ms (event loop {c.main / n * 1000:.2f}, "
            f"other threads {max(0.0, c.process - c.main) / n * 1000:.2f}), emulator {c.emulator / n * 1000:.2f} ms; "
            f"rest of the machine busy {others / self.seconds:.2f} cores on average"
        )


class Replies:
    """Benchmark-only dispatcher middleware: signals per chat when an update has been handled."""

    def __init__(self) -> None:
        self.queues: dict[int, asyncio.Queue] = defaultdict(asyncio.Queue)

    async def __call__(self, handler, event: Update, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        finally:
            chat = chat_of(event)
            if chat is not None:
                self.queues[chat].put_nowait(None)

    async def wait(self, chat_id: int) -> None:
        await asyncio.wait_for(self.queues[chat_id].get(), REPLY_TIMEOUT)


def chat_of(update: Update) -> int | None:
    if update.message is not None:
        return update.message.chat.id
    query = update.callback_query
    if query is not None:
        return query.message.chat.id if query.message is not None else query.from_user.id
    return None


class User:
    """A simulated person: sends one update, waits until it is handled, sends the next."""

    def __init__(self, chat: EmulatorChat, replies: Replies) -> None:
        self.chat = chat
        self.replies = replies
        self.sent: list[float] = []  # epoch milliseconds of each update sent, in order

    async def say(self, text: str) -> None:
        self.sent.append(time.time() * 1000)
        await self.chat.send(text)
        await self.replies.wait(self.chat.chat_id)

    async def tap(self, label: str, messages: list | None = None) -> None:
        """Press a button by label on the newest bot message that has it (`messages`: already fetched)."""
        messages = messages if messages is not None else await self.chat.messages(last=RECENT)
        for message in reversed(messages):
            button = message.button(label)
            if button is not None:
                self.sent.append(time.time() * 1000)
                await self.chat.press_data(button["callback_data"], message.message_id)
                await self.replies.wait(self.chat.chat_id)
                return
        last = messages[-1].content[:120] if messages else None
        raise AssertionError(f"user {self.chat.user_id}: no button {label!r}; last message {last!r}")

    async def last_text(self) -> str:
        return await self.chat.last_text() or ""


async def measure(
    name: str, users: list[User], script: Callable[[User], Awaitable[None]], samples: list[float],
    emulator: TelegramEmulator,
) -> Phase:
    """Run `script` for every user concurrently; time it; collect handling samples and waits."""
    for user in users:
        user.sent = []
    samples.clear()
    pid = emulator._proc.pid if emulator._proc is not None else None
    # Every bot, ours and the echo, runs with what existed before its phase frozen out of the
    # garbage collector, as `bot run` freezes what it built at start (bot.__main__): otherwise a
    # full collection walks this harness's heap too (~200 ms each, in the echo's figures as well).
    gc.collect()
    gc.freeze()
    before = Cpu.now(pid)
    started = time.perf_counter()
    try:
        outcomes = await asyncio.gather(*(script(user) for user in users), return_exceptions=True)
    finally:
        gc.unfreeze()
    seconds = time.perf_counter() - started
    cpu = Cpu.now(pid) - before
    handling = list(samples)
    waits, missing = await user_waits(emulator, users)
    phase = Phase(name, sum(len(u.sent) for u in users), seconds, handling, waits, cpu, missing)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        phase.checks.append(f"users who could not finish: {len(failures)} — WRONG; first error: {failures[0]!r:.300}")
    return phase


async def user_waits(emulator: TelegramEmulator, users: list[User]) -> tuple[list[float], int]:
    """For each update a user sent: the emulator time of the last bot message before the next one."""
    stamps: dict[int, list[float]] = defaultdict(list)
    for message in await emulator.all_messages(include_deleted=True):
        stamps[int(message.chat_id)].append(message.date_ms)
    waits: list[float] = []
    missing = 0
    for user in users:
        times = sorted(stamps[user.chat.chat_id])
        for index, sent in enumerate(user.sent):
            until = user.sent[index + 1] if index + 1 < len(user.sent) else float("inf")
            # date_ms is whole milliseconds; a reply comes after its update was sent and before the next
            low = bisect.bisect_left(times, float(int(sent)))
            high = bisect.bisect_right(times, until)
            if high > low:
                waits.append(max(0.0, times[high - 1] - sent) / 1000)
            else:
                missing += 1
    return waits, missing


# ---- the bots -------------------------------------------------------------------------------------


def echo_dispatcher(samples: list[float], replies: Replies, screen: BotMessage | None = None) -> Dispatcher:
    """The echo bot; with `screen`, it answers every text with that message (its text and inline
    keyboard, built anew each time as our bot builds its screens) instead of echoing."""
    router = Router()
    rows = (screen.reply_markup or {}).get("inline_keyboard", []) if screen is not None else []

    @router.message()
    async def echo(message: Message, bot: Bot) -> None:
        if screen is None:
            await bot.send_message(message.chat.id, message.text or "?")
            return
        markup = InlineKeyboardMarkup(inline_keyboard=[
            [InlineKeyboardButton(text=button["text"], callback_data=button["callback_data"]) for button in row]
            for row in rows
        ]) if rows else None
        await bot.send_message(message.chat.id, screen.content, reply_markup=markup, parse_mode=None)

    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(UpdateTimer(samples))
    dispatcher.update.outer_middleware(replies)
    dispatcher.include_router(router)
    return dispatcher


async def run_echo(emulator: TelegramEmulator, users: int, per_user: int, screen: BotMessage | None = None) -> Phase:
    """The bare aiogram echo bot, stock long polling, the same traffic shape as our throughput run
    (with `screen`: answering with that message instead, see `echo_dispatcher`)."""
    await emulator.clear()
    samples: list[float] = []
    replies = Replies()
    dispatcher = echo_dispatcher(samples, replies, screen)
    bot = emulator.make_bot()
    try:
        async with emulator.polling(dispatcher, bot, polling_timeout=10):
            people = [User(emulator.chat(), replies) for _ in range(users)]

            async def chatter(user: User) -> None:
                for index in range(per_user):
                    await user.say(f"эхо {index}")

            phase = await measure("echo", people, chatter, samples, emulator)
    finally:
        await bot.session.close()
    phase.checks.append(await check_replies(emulator, people, per_user, "эхо" if screen is None else screen.content))
    return phase


@dataclass
class OurBot:
    """Our bot as `bot run` builds it, polling the emulator in this process."""

    app: App
    samples: list[float]
    replies: Replies
    intake: Any
    task: asyncio.Task | None

    @classmethod
    async def start(cls, emulator: TelegramEmulator, url: str, data_dir: Path) -> "OurBot":
        settings = Settings(
            _env_file=None,
            telegram={"token": emulator.token, "api_base_url": emulator.base_url, "polling_timeout": 10},
            db={"url": url},
            http={"enabled": False},
            data_dir=data_dir,
            demo_data=True,
        )
        app = await build_app(settings)
        _bot, dispatcher, intake = build_telegram(app)
        timers = [m for m in dispatcher.update.outer_middleware if isinstance(m, UpdateTimer)]
        if not timers:
            raise SystemExit("build_telegram registers no UpdateTimer: the handling time cannot be measured")
        samples: list[float] = []
        timers[0].samples = samples
        replies = Replies()
        dispatcher.update.outer_middleware(replies)
        task = asyncio.create_task(intake.run())
        return cls(app, samples, replies, intake, task)

    async def pause(self) -> None:
        """Stop polling (the echo bot polls the same token meanwhile); the database stays as it is."""
        if self.task is not None:
            self.intake.stop()
            await asyncio.wait_for(self.task, timeout=30)
            self.task = None

    def resume(self) -> None:
        """Poll again with a fresh intake over the same bot, dispatcher and database."""
        if self.task is None:
            self.intake = type(self.intake)(self.intake.bot, self.intake.dispatcher, self.intake.db,
                                            timeout=self.intake.timeout)
            self.task = asyncio.create_task(self.intake.run())

    async def stop(self) -> None:
        await self.pause()
        await self.app.close()


# ---- what the users do ---------------------------------------------------------------------------


async def register(user: User, index: int) -> None:
    """The registration path of tests/support/driver.py `register_teacher`, synthetic data."""
    await user.say("/start")
    await user.tap("Всеволожский район")
    await user.tap("Согласен(на)")
    await user.tap("Молодой (начинающий) педагог")
    await user.say(f"Тестова Анна {PATRONYMICS[index % len(PATRONYMICS)]}")
    await user.tap("Школа")
    await user.say("Кудрово")
    await user.tap("МОБУ «СОШ № 2», Кудрово")
    await user.tap("Учитель-предметник")
    await user.tap("Филология")
    await user.tap("2025")
    await user.say("1999")
    await user.tap("Всё верно")


PATRONYMICS = ["Сергеевна", "Олеговна", "Игоревна", "Петровна", "Андреевна"]


async def to_organisation_screen(user: User) -> None:
    """A new person up to the organisation search (not measured)."""
    await user.say("/start")
    await user.tap("Всеволожский район")
    await user.tap("Согласен(на)")
    await user.tap("Молодой (начинающий) педагог")
    await user.say("Тестова Анна Сергеевна")
    await user.tap("Школа")


async def fill_questionnaire(user: User) -> None:
    """Answer every question of the open young-teacher questionnaire with the first option / a short text."""
    from dialogs.flows import questionnaire as Q
    from dialogs.flows import texts as T

    await user.tap(SURVEY_ITEM)
    for _step in range(120):
        messages = await user.chat.messages(last=RECENT)
        last = messages[-1]
        text, buttons = last.content, last.buttons
        if text.startswith((Q.SENT, Q.SENT_ANONYMOUS)):
            return
        options = [b for b in buttons if b not in (T.BACK, Q.PAUSE, Q.KEEP, Q.SKIP)]
        if "Начать" in buttons or "Продолжить" in buttons:
            await user.tap("Начать" if "Начать" in buttons else "Продолжить", messages)
        elif text.startswith(Q.REVIEW_HEAD):
            await user.tap("Отправить анкету", messages)
        elif Q.MULTI_HINT in text:
            ticked = any(label.startswith(T.TICK_ON) for label in buttons)
            await user.tap(T.DONE if ticked else next(b for b in buttons if b.startswith(T.TICK_OFF)), messages)
        elif Q.YEAR_HINT in text:
            await user.say("2024")
        elif Q.TEXT_HINT in text or not options:
            await user.say("Синтетический ответ для нагрузочного теста")
        else:
            await user.tap(options[0], messages)
    raise AssertionError(f"user {user.chat.user_id}: the questionnaire did not finish; last: {text[:120]!r}")


def questionnaire_registered() -> tuple[bool, str]:
    from dialogs.registry import build_registry

    registry = build_registry()
    if "questionnaire" not in registry.flows:
        exists = Path(__file__).resolve().parents[1].joinpath("dialogs/flows/questionnaire.py").exists()
        why = "the flow is not registered in dialogs/registry.py" if exists else "dialogs/flows/questionnaire.py does not exist"
        return False, why
    return True, ""


async def open_survey_campaign(app: App) -> None:
    """A coordinator and an open young-teacher campaign, so the menu item leads to the questions."""
    from dialogs.model import ExternalId
    from storage.models import Role
    from storage.services import members as member_service
    from storage.services import surveys as S

    now = app.clock()
    async with app.db.unit() as uow:
        municipality = await uow.reference.municipality_by_code("vsevolozhsky")
        actor = await member_service.register_member(
            uow, ExternalId("console", "bench-coordinator", "bench-coordinator"), role=Role.COORDINATOR,
            full_name="Координатор Ольга Ивановна", municipality_id=municipality.id, now=now,
        )
        today = S.local_today(municipality, now)
        await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=now, opens_on=today,
                              closes_on=today + timedelta(days=30))
        await uow.commit()


async def check_replies(emulator: TelegramEmulator, users: list[User], per_user: int, prefix: str) -> str:
    """Every user got exactly one reply per text, and it is the expected screen."""
    by_chat: dict[int, list[str]] = defaultdict(list)
    for message in await emulator.all_messages():
        by_chat[int(message.chat_id)].append(message.content)
    good = sum(
        1 for user in users for text in by_chat[user.chat.chat_id] if text.startswith(prefix)
    )
    total = sum(len(by_chat[user.chat.chat_id]) for user in users)
    expected = per_user * len(users)
    verdict = "ok" if good == total == expected else "WRONG"
    return f"replies: {total} (expected {expected}), of them the expected screen: {good} — {verdict}"


@contextlib.contextmanager
def profiled(profile: Path | None | bool):
    """cProfile the block into `profile` (when given); yields the line to add to the phase's checks."""
    note: list[str] = []
    if not profile:
        yield note
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield note
    finally:
        profiler.disable()
        profiler.dump_stats(str(profile))
        note.append(f"PROFILED with cProfile (times inflated), stats in {profile}")


@dataclass
class Throughput:
    """The throughput comparison: echo and ours in alternating rounds, and each round's ratio."""

    echo: Phase
    ours: Phase
    ratios: list[float]
    same_reply: Phase  # the echo bot answering with our screen instead (a diagnostic, not the target)
    same_reply_ratios: list[float]

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: a burst of load from elsewhere spoils one round, not all."""
        return statistics.median(self.ratios)

    @property
    def same_reply_ratio(self) -> float:
        return statistics.median(self.same_reply_ratios)


async def run_ours(emulator: TelegramEmulator, url: str, users: int, per_user: int, rounds: int,
                   profile: Path | None, profile_phase: str = "throughput") -> tuple[Phase, Throughput]:
    """Our bot on a fresh database: the scenario; then throughput rounds, each right after an echo
    round of the same size (our bot pauses its polling meanwhile); then stop it."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        await emulator.clear()
        ours = await OurBot.start(emulator, url, Path(tmp))
        try:
            with_survey, why_not = questionnaire_registered()
            if with_survey:
                await open_survey_campaign(ours.app)

            async def scenario(user: User) -> None:
                await register(user, user.chat.user_id)
                if with_survey:
                    await fill_questionnaire(user)

            people = [User(emulator.chat(), ours.replies) for _ in range(users)]
            name = "registration + questionnaire" if with_survey else "registration"
            with profiled(profile_phase == "scenario" and profile) as profile_note:
                story = await measure(name, people, scenario, ours.samples, emulator)
            story.checks += profile_note
            finals = [await person.last_text() for person in people]
            done_text = "Спасибо! Анкета отправлена" if with_survey else MAIN_MENU
            finished = sum(1 for text in finals if text.startswith(done_text))
            story.checks.append(f"users who finished: {finished} of {users}" + ("" if finished == users else " — WRONG"))
            if not with_survey:
                story.checks.append(f"questionnaire part SKIPPED: {why_not}")

            searchers = [User(emulator.chat(), ours.replies) for _ in range(users)]
            await asyncio.gather(*(to_organisation_screen(person) for person in searchers))
            per_round = max(1, per_user // rounds)

            async def search(user: User) -> None:
                for index in range(per_round):
                    await user.say(SEARCHES[index % len(SEARCHES)])

            screen = (await searchers[0].chat.messages(last=1))[-1]  # the organisation screen, as sent
            echoes: list[Phase] = []
            same: list[Phase] = []
            ourses: list[Phase] = []
            for round_ in range(rounds):
                await ours.pause()
                echoes.append(await run_echo(emulator, users, per_round))
                same.append(await run_echo(emulator, users, per_round, screen))
                await emulator.clear()  # each round starts on an empty emulator, as the echo's did
                ours.resume()
                with profiled(profile_phase == "throughput" and round_ == 0 and profile) as profile_note:
                    phase = await measure("throughput", searchers, search, ours.samples, emulator)
                phase.checks += profile_note
                phase.checks.append(await check_replies(emulator, searchers, per_round, ASK_ORG))
                ourses.append(phase)
            throughput = Throughput(
                Phase.merged("echo", echoes), Phase.merged("throughput", ourses),
                [mine.rate / echo.rate if echo.rate else 0.0 for mine, echo in zip(ourses, echoes)],
                Phase.merged("echo with our screen", same),
                [mine.rate / echo.rate if echo.rate else 0.0 for mine, echo in zip(ourses, same)],
            )
            async with ours.app.db.unit() as uow:
                members = (await uow.session.execute(select(func.count(Member.id)))).scalar_one()
                pending = (await uow.session.execute(
                    select(func.count()).select_from(InboxUpdate).where(InboxUpdate.handled_at.is_(None))
                )).scalar_one()
                journaled = (await uow.session.execute(select(func.count()).select_from(InboxUpdate))).scalar_one()
            expected = users + (1 if with_survey else 0)  # + the coordinator who opened the campaign
            state = "ok" if members == expected and pending == 0 else "WRONG"
            story.checks.append(
                f"members in the database: {members} (expected {expected}); journal rows: {journaled}, "
                f"unhandled: {pending} — {state}"
            )
        finally:
            await ours.stop()
    return story, throughput


async def fresh_database(stack: contextlib.AsyncExitStack, admin_url: str | None) -> str:
    """A new database for one backend's run, removed when `stack` closes: a SQLite file in a
    temporary folder (no `admin_url`), or a new PostgreSQL database."""
    if admin_url is None:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-db-")))
        return f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}"
    return await stack.enter_async_context(fresh_postgres(admin_url, "bench"))


# ---- the report -----------------------------------------------------------------------------------


async def driver_cost(emulator: TelegramEmulator, users: int, per_user: int = 10) -> float:
    """CPU seconds this process spends per message sent by the simulated users (no bot running)."""
    await emulator.clear()
    people = [emulator.chat() for _ in range(users)]
    before = time.process_time()

    async def chatter(chat: EmulatorChat) -> None:
        for index in range(per_user):
            await chat.send(f"калибровка {index}")

    await asyncio.gather(*(chatter(chat) for chat in people))
    spent = time.process_time() - before
    await emulator.clear()
    return spent / (users * per_user)


def report_phase(phase: Phase, indent: str = "  ") -> None:
    print(f"{indent}{phase.updates} updates in {phase.seconds:.2f} s = {phase.rate:.0f} updates/s")
    print(f"{indent}bot handling time : {spread(phase.handling)}")
    print(f"{indent}user waits        : {spread(phase.waits)}")
    if phase.missing_replies:
        print(f"{indent}updates without a reply in the emulator: {phase.missing_replies}")
    print(f"{indent}{phase.cpu_line()}")
    for line in phase.checks:
        print(f"{indent}{line}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def run(args: argparse.Namespace) -> int:
    begun = time.perf_counter()
    per_user = max(1, args.updates // args.users)
    emulator = TelegramEmulator()
    await emulator.start()
    all_ok = True
    try:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"bench.load: {args.users} users, {per_user * args.users} updates per throughput run; "
              f"{os.cpu_count()} CPUs, load average before the run {load}; emulator on {emulator.base_url}")
        driver = await driver_cost(emulator, args.users)
        print(f"simulated users (same process, part of every run): {driver * 1000:.2f} ms CPU per message sent\n")
        backends = [("SQLite", None)]
        if args.postgres:
            backends.append(("PostgreSQL", args.postgres))
        for label, admin_url in backends:
            started = time.perf_counter()
            async with contextlib.AsyncExitStack() as stack:
                url = await fresh_database(stack, admin_url)
                profile = args.profile if (args.profile and label == args.profile_backend) else None
                story, compared = await run_ours(emulator, url, args.users, per_user, args.rounds, profile,
                                                 args.profile_phase)
            echo, throughput, ratio = compared.echo, compared.ours, compared.ratio
            print(f"== {label} ({time.perf_counter() - started:.0f} s) ==")
            print(f"baseline: bare aiogram echo bot, stock start_polling ({args.rounds} rounds, totals)")
            report_phase(echo)
            print("the echo bot answering every text with our organisation screen (same text and keyboard; totals)")
            report_phase(compared.same_reply)
            print(f"our bot, scenario: {story.name}, {args.users} users at once")
            report_phase(story)
            print(f"our bot, throughput: {throughput.updates // args.users} search texts per user on the "
                  f"organisation screen ({args.rounds} rounds, each right after an echo round; totals)")
            report_phase(throughput)
            rounds = ", ".join(f"{value:.2f}" for value in compared.ratios)
            same_rounds = ", ".join(f"{value:.2f}" for value in compared.same_reply_ratios)
            cpu_ours = throughput.cpu.process / max(throughput.updates, 1)
            cpu_echo = echo.cpu.process / max(echo.updates, 1)
            p99 = percentile(throughput.handling, 0.99) if throughput.handling else float("inf")
            p99_story = percentile(story.handling, 0.99) if story.handling else float("inf")
            ok_ratio, ok_p99 = ratio >= TARGET_RATIO, p99 < TARGET_P99
            ok_p99_story = p99_story < TARGET_P99
            correct = all("WRONG" not in line for line in
                          throughput.checks + echo.checks + compared.same_reply.checks + story.checks)
            print("result:")
            print(f"  updates/s: ours {throughput.rate:.0f} / echo {echo.rate:.0f} over all rounds; ratio by round "
                  f"{rounds}: median {ratio:.2f} (target ≥ {TARGET_RATIO}) {verdict(ok_ratio)}")
            print(f"  for comparison, not a target: ours / the echo bot answering with our organisation screen "
                  f"(same text and keyboard, {compared.same_reply.rate:.0f} updates/s): by round {same_rounds}: "
                  f"median {compared.same_reply_ratio:.2f}; that echo sends the keyboard through aiogram's models, "
                  f"ours as a JSON body")
            print(f"  bot handling p99, throughput: {p99 * 1000:.1f} ms (target < {TARGET_P99 * 1000:.0f} ms) "
                  f"{verdict(ok_p99)}")
            print(f"  bot handling p99, scenario: {p99_story * 1000:.1f} ms (target < {TARGET_P99 * 1000:.0f} ms) "
                  f"{verdict(ok_p99_story)}")
            print(f"  CPU of this process per update: ours {cpu_ours * 1000:.2f} ms, echo {cpu_echo * 1000:.2f} ms; "
                  f"without the simulated users: ours {(cpu_ours - driver) * 1000:.2f} ms, "
                  f"echo {(cpu_echo - driver) * 1000:.2f} ms; the ratio these imply when this process is "
                  f"the bottleneck: {cpu_echo / cpu_ours if cpu_ours else 0:.2f}")
            print(f"  replies correct: {verdict(correct)}\n")
            all_ok = all_ok and ok_ratio and ok_p99 and ok_p99_story and correct
    finally:
        await emulator.stop()
    if args.profile:
        summarise_profile(args.profile)
    print(f"total {time.perf_counter() - begun:.0f} s")
    print("ALL TARGETS PASS" if all_ok else "SOME TARGETS FAIL")
    return 0 if all_ok else 1


def summarise_profile(path: Path, top: int = 25) -> None:
    """CPU of the event-loop thread by library, and the functions that cost most (own time)."""
    stats = pstats.Stats(str(path))
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "epoll" in name:  # the event loop waiting: idle, not work
            continue
        total += tottime
        groups[library_of(filename)] += tottime
    print(f"profile (event-loop thread, own time by library without idle waits, "
          f"total {total:.1f} s):")
    for name, seconds in sorted(groups.items(), key=lambda item: -item[1])[:15]:
        print(f"  {name:28s} {seconds:7.2f} s  {seconds / total:5.1%}")
    print()
    stats.sort_stats("tottime").print_stats(top)


def library_of(filename: str) -> str:
    marker = "site-packages/"
    if marker in filename:
        return filename.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    root = str(Path(__file__).resolve().parents[1]) + "/"
    if filename.startswith(root):
        parts = filename[len(root):].split("/")
        return "/".join(parts[:2]) if parts[0] in ("storage", "dialogs", "handlers") else parts[0]
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "stdlib:" + Path(filename).stem


# ---- where the CPU goes: a sequential per-stage breakdown --------------------------------------------

# (module, attribute, label): functions wrapped in a --breakdown run; a name that no longer exists is
# skipped, so the breakdown keeps working while the hot path is rewritten.
STAGES = [
    ("aiogram", "Bot.get_updates", "aiogram: getUpdates HTTP + parse (+ the user's send)"),
    ("handlers.telegram.polling", "DurablePolling._get_updates", "getUpdates as JSON (+ the user's send)"),
    ("aiogram", "Dispatcher.feed_update", "aiogram: dispatch (middlewares, router)"),
    ("aiogram", "Bot.send_message", "aiogram: sendMessage HTTP + parse"),
    ("handlers.telegram.render", "send_text", "sendMessage as JSON"),
    ("handlers.telegram.router", "send_reply", "adapter: send_reply glue"),
    ("handlers.telegram.polling", "Intake._journal", "journal (+ each update's start on PostgreSQL): batch glue"),
    ("storage.repositories.inbox", "InboxRepository.record", "journal: inbox INSERT"),
    ("dialogs.engine", "DialogEngine._handle_locked", "engine: unit-of-work glue"),
    ("storage.unit_of_work", "UnitOfWork.start_update", "engine: start (handled?, state, member id)"),
    ("storage.unit_of_work", "UnitOfWork.finish_update", "engine: finish (state save + claim with the reply)"),
    ("dialogs.model", "encode_reply", "engine: the reply kept until sent (JSON)"),
    ("storage.repositories.inbox", "Deliveries._mark", "replies marked sent (a batch every 0.1 s)"),
    ("storage.repositories.inbox", "InboxRepository.is_handled", "engine: inbox SELECT (is handled?)"),
    ("storage.repositories.inbox", "InboxRepository.mark_handled", "engine: inbox UPDATE (handled)"),
    ("storage.repositories.conversations", "ConversationRepository.load", "engine: state SELECT"),
    ("storage.repositories.conversations", "ConversationRepository.save", "engine: state UPSERT"),
    ("storage.unit_of_work", "UnitOfWork.commit", "COMMIT (journal + engine)"),
    ("storage.unit_of_work", "_UnitContext.__aenter__", "session open"),
    ("storage.unit_of_work", "_UnitContext.__aexit__", "session close"),
    ("dialogs.engine", "_Run.dispatch", "engine: dialog logic"),
    ("dialogs.engine", "_Run.render", "engine: render"),
    ("storage.repositories.accounts", "AccountRepository.with_member", "ORM: account + member SELECT"),
    ("storage.repositories.reference", "ReferenceRepository.municipality", "ORM: municipality get"),
    ("storage.repositories.reference", "ReferenceRepository.organisations", "ORM: organisations SELECT"),
]


class StageClock:
    """Exclusive CPU time per wrapped function or coroutine function (children subtracted), per task."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # calls, CPU seconds (all threads)
        self.stack: contextvars.ContextVar[tuple] = contextvars.ContextVar("stage_stack", default=())
        self.enabled = False

    def wrap(self, owner: Any, name: str, label: str) -> None:
        function = getattr(owner, name)
        clock = self

        def enter() -> tuple:
            children = [0.0]
            parent = clock.stack.get()
            return parent, children, clock.stack.set(parent + (children,)), time.process_time()

        def leave(parent: tuple, children: list, token, started: float) -> None:
            spent = time.process_time() - started
            clock.stack.reset(token)
            total = clock.totals[label]
            total[0] += 1
            total[1] += spent - children[0]
            if parent:
                parent[-1][0] += spent

        if inspect.iscoroutinefunction(function):
            @functools.wraps(function)
            async def timed(*args, **kwargs):
                if not clock.enabled:
                    return await function(*args, **kwargs)
                entered = enter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    leave(*entered)
        else:
            @functools.wraps(function)
            def timed(*args, **kwargs):
                if not clock.enabled:
                    return function(*args, **kwargs)
                entered = enter()
                try:
                    return function(*args, **kwargs)
                finally:
                    leave(*entered)

        setattr(owner, name, timed)

    def install(self) -> list[str]:
        skipped = []
        for module_name, path, label in STAGES:
            owner: Any = importlib.import_module(module_name)
            *outer, name = path.split(".")
            try:
                for part in outer:
                    owner = getattr(owner, part)
                getattr(owner, name)
            except AttributeError:
                skipped.append(f"{module_name}.{path}")
                continue
            self.wrap(owner, name, label)
        return skipped


def count_generic_classes() -> list[int]:
    """Count pydantic's parametrised-generic class builds. aiogram validates every API answer with
    `Response[T]`; pydantic caches those classes only weakly, so after a garbage collection the
    class is built again (milliseconds each)."""
    created = [0]
    try:
        from pydantic._internal import _generics
    except ImportError:  # pragma: no cover - pydantic moved it
        return created
    build = _generics.create_generic_submodel

    def counting(*args, **kwargs):
        created[0] += 1
        return build(*args, **kwargs)

    _generics.create_generic_submodel = counting
    return created


async def breakdown(args: argparse.Namespace) -> int:
    """One user, one update at a time, so each stage's CPU is its own; our bot only."""
    from handlers.telegram import polling

    clock = StageClock()
    skipped = clock.install()

    async def handle_inline(self, update, prefetched=None) -> None:  # no overlap: stages stay separable
        await self._slots.acquire()
        await self._handle(update, prefetched)

    polling.Intake._spawn = handle_inline
    created = count_generic_classes()
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        backends = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
        for label, admin_url in backends:
            async with contextlib.AsyncExitStack() as stack:
                url = await fresh_database(stack, admin_url)
                ours = await OurBot.start(emulator, url, Path(stack.enter_context(tempfile.TemporaryDirectory())))
                try:
                    user = User(emulator.chat(), ours.replies)
                    await to_organisation_screen(user)
                    for index in range(30):  # warm-up
                        await user.say(SEARCHES[index % len(SEARCHES)])
                    clock.totals.clear()
                    created[0] = 0
                    clock.enabled = True
                    before = time.process_time()
                    for index in range(args.breakdown):
                        await user.say(SEARCHES[index % len(SEARCHES)])
                    spent = time.process_time() - before
                    clock.enabled = False
                finally:
                    await ours.stop()
            n = args.breakdown
            print(f"== {label}: CPU per search text on the organisation screen, {n} sequential updates ==")
            print(f"  this process: {spent / n * 1000:.2f} ms per update")
            for name, (calls, seconds) in sorted(clock.totals.items(), key=lambda item: -item[1][1]):
                print(f"  {seconds / n * 1000:7.3f} ms  {calls / n:4.1f}×  {name}")
            rest = spent - sum(seconds for _calls, seconds in clock.totals.values())
            print(f"  {rest / n * 1000:7.3f} ms        the rest (event loop, user's wait, unwrapped code)")
            print(f"  pydantic generic classes built meanwhile (aiogram's Response[...], inside the HTTP rows): "
                  f"{created[0]} ({created[0] / n:.2f} per update)")
            if skipped:
                print(f"  not measured (renamed or gone): {', '.join(skipped)}")
            print()
        await statement_costs()
    finally:
        await emulator.stop()
    return 0


async def statement_costs(n: int = 2000) -> None:
    """CPU of one indexed SELECT through each layer on SQLite: what bounds the updates/s ratio."""
    import sqlite3

    import aiosqlite
    from sqlalchemy import column, table

    with tempfile.TemporaryDirectory(prefix="bench-load-stmt-") as folder:
        path = str(Path(folder) / "s.sqlite3")
        with sqlite3.connect(path) as setup:
            setup.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
            setup.execute("INSERT INTO t VALUES ('k', 'v')")
        costs: dict[str, float] = {}
        direct = sqlite3.connect(path)
        started = time.process_time()
        for _ in range(n):
            direct.execute("SELECT v FROM t WHERE k = ?", ("k",)).fetchall()
        costs["sqlite3, in the calling thread"] = time.process_time() - started
        direct.close()
        async with aiosqlite.connect(path) as threaded:
            started = time.process_time()
            for _ in range(n):
                await (await threaded.execute("SELECT v FROM t WHERE k = ?", ("k",))).fetchall()
            costs["aiosqlite (its own thread)"] = time.process_time() - started
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        rows = table("t", column("k"), column("v"))
        async with engine.connect() as connection:
            started = time.process_time()
            for _ in range(n):
                (await connection.execute(select(rows.c.v).where(rows.c.k == "k"))).first()
            costs["SQLAlchemy Core over aiosqlite"] = time.process_time() - started
        await engine.dispose()
    print("== CPU of one indexed SELECT by layer (SQLite; an update runs four or five) ==")
    for name, seconds in costs.items():
        print(f"  {seconds / n * 1e6:7.1f} µs  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="PostgreSQL admin URL (postgresql+asyncpg://user@host:port/postgres)")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--updates", type=int, default=5000, help="updates in each throughput run")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating echo/ours throughput rounds the updates are split into (median ratio)")
    parser.add_argument("--profile", type=Path, help="cProfile a phase of our bot's run into this file")
    parser.add_argument("--profile-backend", choices=["SQLite", "PostgreSQL"], default="SQLite",
                        help="which backend's run --profile covers (default: SQLite)")
    parser.add_argument("--profile-phase", choices=["throughput", "scenario"], default="throughput",
                        help="which phase --profile covers (default: throughput)")
    parser.add_argument("--breakdown", type=int, metavar="N",
                        help="instead: CPU per stage of our bot over N sequential updates of one user")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(breakdown(args) if args.breakdown else run(args))


if __name__ == "__main__":
    sys.exit(main())

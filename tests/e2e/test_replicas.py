"""Three `python -m bot run` processes in webhook mode on one PostgreSQL database (PostgreSQL only).

They start together on an empty database. Updates are posted the way Telegram posts them (JSON
body, the secret header), a third of them twice to two processes at once and a third again after
the first delivery was acknowledged; a 5,000-message broadcast is dispatched by the three
schedulers while one process is killed with SIGKILL. Every update is answered once and no message
is delivered twice; every message is delivered once except those the kill caught in flight (marked
`attempting`, at most `IN_FLIGHT_AT_MOST`): Telegram cannot be asked whether it got them, so they
become `uncertain` and are not sent again. The survivors take the killed process's claims over as
soon as its presence lock is gone, without waiting for the lease. The test checks which rows are
uncertain, that they are few, and that each of them reached Telegram at most once.

Each process reaches the emulator through a `BotApiFront` of its own: the emulator has no
`setWebhook`, which a process in webhook mode calls at start, so the front answers it (and
records it) and passes every other call through. The database is reached through a `TcpProxy`,
so that the test can stop it and see every process report "not ready".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from handlers.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH
from scheduler.jobs import IN_FLIGHT_AT_MOST

ROOT = Path(__file__).resolve().parents[2]
SECRET = "replica-webhook-secret-0123456789"
PUBLIC_URL = "https://bot.example.org"
BOT_LIMITS = {"LIMITS__TELEGRAM_PER_SECOND": "1000", "LIMITS__TELEGRAM_PER_CHAT_PER_SECOND": "1000"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BotApiFront:
    """One bot process's way to the emulator: answers `setWebhook` itself (the emulator has no
    webhooks) and passes every other Bot API call through unchanged, counting what it passed."""

    def __init__(self, target: str, session: aiohttp.ClientSession) -> None:
        self.target = target.rstrip("/")
        self.session = session
        self.webhooks: list[dict[str, str | None]] = []
        self.sent: list[tuple[str, int, float]] = []  # (chat id, status, monotonic time) of each sendMessage
        self.listener = None  # optional `listener(chat_id, message)` for each message the bot sent
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "BotApiFront":
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _pass(self, request: web.Request) -> web.StreamResponse:
        method = request.path.rsplit("/", 1)[-1].lower()
        if method == "setwebhook":
            form = await request.post()
            self.webhooks.append({"url": form.get("url"), "secret_token": form.get("secret_token")})
            return web.json_response({"ok": True, "result": True})
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/octet-stream")}
        async with self.session.request(request.method, self.target + request.path_qs, data=body,
                                        headers=headers) as answer:
            payload = await answer.read()
            if method == "sendmessage":
                form = await request.post()
                self.sent.append((str(form.get("chat_id")), answer.status, time.monotonic()))
                if self.listener is not None and answer.status == 200:
                    self.listener(str(form.get("chat_id")), json.loads(payload)["result"])
            return web.Response(status=answer.status, body=payload,
                                headers={"Content-Type": answer.headers.get("Content-Type", "application/json")})


class BotProcess:
    """`python -m bot run` in webhook mode on its own HTTP port."""

    def __init__(self, name: str, workdir: Path, db_url: str, api_base_url: str, token: str,
                 **extra: str) -> None:
        self.name = name
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM__", "VK__", "DB__", "HTTP__"))}
        env.update({
            "PYTHONPATH": str(ROOT), "DB__URL": db_url, "LOG_LEVEL": "WARNING",
            "TELEGRAM__TOKEN": token, "TELEGRAM__API_BASE_URL": api_base_url, "TELEGRAM__MODE": "webhook",
            "TELEGRAM__WEBHOOK_URL": PUBLIC_URL, "TELEGRAM__WEBHOOK_SECRET": SECRET,
            "HTTP__HOST": "127.0.0.1", "HTTP__PORT": str(self.port), "QUIET_HOURS": "00:00-00:00",
            **BOT_LIMITS, **extra,
        })
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "BotProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"], cwd=self.workdir, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.log_tail()}")

    async def ready(self, http: aiohttp.ClientSession) -> tuple[int, dict]:
        async with http.get(self.url + "/readyz", timeout=aiohttp.ClientTimeout(total=10)) as answer:
            return answer.status, await answer.json()

    async def metric(self, http: aiohttp.ClientSession, name: str) -> float:
        """The sum of one metric's samples in this process's /metrics."""
        async with http.get(self.url + "/metrics", timeout=aiohttp.ClientTimeout(total=10)) as answer:
            text = await answer.text()
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", re.M)
        return sum(float(value) for value in pattern.findall(text))

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    async def terminate(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait for the exit without blocking the loop (the process may still need
        the database and API proxies that run in it)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.process.poll() is None:
                self.kill()
        return self.process.returncode


# ---- updates as Telegram posts them ------------------------------------------------------------

_update_ids = itertools.count(random.randrange(10**6, 10**8))


def user_of(user_id: int) -> dict:
    return {"id": user_id, "is_bot": False, "first_name": "Тест", "language_code": "ru"}


def text_update(user_id: int, text: str) -> dict:
    message = {
        "message_id": next(_update_ids), "date": int(time.time()),
        "chat": {"id": user_id, "type": "private", "first_name": "Тест"}, "from": user_of(user_id), "text": text,
    }
    if text.startswith("/"):
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": next(_update_ids), "message": message}


def press_update(user_id: int, bot_message: dict, label: str) -> dict:
    """A callback_query carrying the bot's message (`message_id`, `date`, `text`, `reply_markup`)."""
    buttons = [b for row in (bot_message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]
    button = next((b for b in buttons if b.get("text") == label), None)
    assert button is not None, f"no button {label!r} among {[b.get('text') for b in buttons]}"
    message = {
        "message_id": bot_message["message_id"], "date": bot_message["date"],
        "chat": {"id": user_id, "type": "private", "first_name": "Тест"},
        "from": {"id": 123456, "is_bot": True, "first_name": "Test Bot", "username": "test_emulator_bot"},
        "text": bot_message.get("text") or "", "reply_markup": bot_message["reply_markup"],
    }
    return {
        "update_id": next(_update_ids),
        "callback_query": {"id": str(next(_update_ids)), "from": user_of(user_id), "message": message,
                           "chat_instance": f"ci{user_id}", "data": button["callback_data"]},
    }


async def post_update(http: aiohttp.ClientSession, process: BotProcess, update: dict) -> int:
    async with http.post(process.url + WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET}) as answer:
        return answer.status


async def bot_messages(emulator, chats: set[int]) -> dict[int, list]:
    """What the bot sent to each of these chats, in order."""
    found: dict[int, list] = {chat: [] for chat in chats}
    for message in await emulator.all_messages():
        chat = int(message.chat_id)
        if chat in found:
            found[chat].append(message)
    return found


async def _true_when(value):
    return value


async def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout} s) waiting for {what}")
        await asyncio.sleep(interval)


# ---- the cluster ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def cluster(emulator, db_url: str, workdir: Path, size: int = 3, **extra: str):
    """`size` bot processes started together on one (possibly empty) database, each ready."""
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    fronts = [await BotApiFront(emulator.base_url, http).start() for _ in range(size)]
    processes = [
        BotProcess(f"bot{index}", workdir, db_url, front.base_url, emulator.token, **extra)
        for index, front in enumerate(fronts)
    ]
    try:
        for process in processes:
            process.start()
        await asyncio.gather(*(process.wait_ready(http) for process in processes))
        yield http, processes, fronts
    finally:
        await asyncio.gather(*(process.terminate() for process in processes))
        for front in fronts:
            await front.stop()
        await http.close()


# ---- the scenario --------------------------------------------------------------------------------

USERS = 60
STEPS = [  # what each user does, in order, and how each of the bot's answers to it begins
    ("text", "/start", ["Здравствуйте!"]),
    ("press", "Всеволожский район", ["Согласие на обработку персональных данных"]),
    ("press", "Согласен(на)", ["Спасибо! Согласие сохранено.", "Кто вы в программе?"]),
    ("press", "Молодой (начинающий) педагог", ["Как вас зовут?"]),
    ("text", "Иванова Анна Петровна", ["Где вы работаете?"]),
]
ANSWERS = [begins for _kind, _value, answer in STEPS for begins in answer]
BROADCAST = 5000


def db_through(proxy_port: int, url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=proxy_port).render_as_string(hide_password=False)


async def register_in_steps(http, processes, emulator, users: list[int]) -> dict[int, list]:
    """Every user goes through STEPS; each update goes to one process, a third of them are also
    delivered at the same moment to another, a third again after the first delivery was acknowledged."""
    chats = set(users)
    expected = 0
    for step, (kind, value, answer) in enumerate(STEPS):
        expected += len(answer)
        seen = await bot_messages(emulator, chats) if kind == "press" else {}

        async def deliver(index: int, user: int) -> list[int]:
            if kind == "text":
                update = text_update(user, value)
            else:
                last = seen[user][-1]
                shown = {"message_id": last.message_id, "date": last.date, "text": last.text,
                         "reply_markup": last.reply_markup}
                update = press_update(user, shown, value)
            first, second = processes[(index + step) % 3], processes[(index + step + 1) % 3]
            if index % 3 == 0:
                return list(await asyncio.gather(post_update(http, first, update), post_update(http, second, update)))
            if index % 3 == 1:
                return [await post_update(http, first, update), await post_update(http, second, update)]
            return [await post_update(http, first, update)]

        statuses = await asyncio.gather(*(deliver(index, user) for index, user in enumerate(users)))
        assert {status for pair in statuses for status in pair} == {200}

        async def everyone_answered():
            found = await bot_messages(emulator, chats)
            return found if all(len(found[user]) >= expected for user in users) else None

        await wait_until(everyone_answered, 30, f"the answers to step {step + 1}")
    await asyncio.sleep(0.5)  # a second answer to a duplicate would arrive by now
    return await bot_messages(emulator, chats)


async def test_three_webhook_replicas_answer_each_update_once_and_deliver_a_broadcast_once_despite_a_kill(
    emulator, postgres_url, tmp_path
):
    from sqlalchemy import func, insert, select
    from sqlalchemy.engine import make_url

    from storage.db import create_engine, session_factory
    from storage.models import Account, Conversation, InboxUpdate, Member, Municipality, utcnow
    from storage.models_outbox import OutboxMessage
    from storage.services.outbox import enqueue
    from storage.unit_of_work import Database
    from tests.support.tcp_proxy import TcpProxy

    database = make_url(postgres_url)
    db_proxy = await TcpProxy(database.host, database.port).start()  # to stop "the database" at the end
    engine = create_engine(postgres_url)
    db = Database(session_factory(engine))
    base = random.randrange(10**6, 10**9) * 10_000
    users = [base + index for index in range(USERS)]
    try:
        # Three processes start together on an empty database: one migrates, the others wait.
        t0 = time.monotonic()
        async with cluster(emulator, db_through(db_proxy.port, postgres_url), tmp_path) as (http, processes, fronts):
            assert all(front.webhooks == [{"url": PUBLIC_URL + WEBHOOK_PATH, "secret_token": SECRET}]
                       for front in fronts)

            print(f"cluster ready in {time.monotonic() - t0:.1f} s")
            # -- a stream of updates, some delivered twice to different processes
            answers = await register_in_steps(http, processes, emulator, users)

            for user in users:  # each update answered once: exactly the expected messages, in order
                texts = [message.content for message in answers[user]]
                assert len(texts) == len(ANSWERS), (user, texts)
                assert all(text.startswith(begins) for text, begins in zip(texts, ANSWERS)), texts
            async with db.unit() as uow:
                states = (await uow.session.execute(
                    select(Conversation).where(Conversation.external_id.in_([str(user) for user in users]))
                )).scalars().all()
                journal = (await uow.session.execute(
                    select(func.count(), func.count(InboxUpdate.handled_at)).select_from(InboxUpdate)
                )).one()
            assert len(states) == USERS
            assert len({(state.flow, state.screen) for state in states}) == 1
            assert all(state.data.get("full_name") == "Иванова Анна Петровна" for state in states), states[0].data
            assert tuple(journal) == (USERS * len(STEPS), USERS * len(STEPS))
            handled = [await process.metric(http, "bot_updates_handled_total") for process in processes]
            assert sum(handled) == USERS * len(STEPS) and all(handled), handled

            # -- each process paces at a third of the per-token rate limit (the senders are counted every tick)
            async def three_counted():
                return [await process.metric(http, "bot_sending_processes") for process in processes] == [3, 3, 3]

            await wait_until(three_counted, 15, "each process counting three senders", interval=0.5)

            # -- a broadcast of 5,000 messages, dispatched by the three schedulers
            started = time.monotonic()
            chat_base = base + 100_000
            async with db.unit() as uow:
                municipality_id = (await uow.session.execute(
                    select(Municipality.id).where(Municipality.code == "vsevolozhsky"))).scalar_one()
                member_ids = list((await uow.session.execute(
                    insert(Member).returning(Member.id),
                    [{"role": "teacher", "full_name": f"Учитель {index}", "municipality_id": municipality_id,
                      "preferred_transport": "telegram", "mentor_confirmed": False} for index in range(BROADCAST)],
                )).scalars())
                await uow.session.execute(insert(Account), [
                    {"transport": "telegram", "external_id": str(chat_base + index),
                     "chat_id": str(chat_base + index), "member_id": member_id}
                    for index, member_id in enumerate(member_ids)
                ])
                due = utcnow() - timedelta(minutes=1)
                for index, member_id in enumerate(member_ids):
                    await enqueue(uow, key=f"replicas:{index}", kind="test.broadcast", member_id=member_id,
                                  text=f"Напоминание № {index}", due_at=due)
                await uow.commit()
            print(f"seeded {BROADCAST} members and outbox rows in {time.monotonic() - started:.1f} s")
            chats = {chat_base + index for index in range(BROADCAST)}

            async def outbox() -> tuple[Counter, set[int]]:
                async with db.unit() as uow:
                    rows = (await uow.session.execute(
                        select(OutboxMessage.id, OutboxMessage.state).where(OutboxMessage.kind == "test.broadcast")
                    )).all()
                return Counter(state for _id, state in rows), {
                    id_ for id_, state in rows if state in ("sending", "attempting")
                }

            # -- kill -9 the process sending most right now, once all three send and a third is sent
            def sends() -> list[int]:
                return [sum(1 for _chat, status, _at in front.sent if status == 200) for front in fronts]

            await wait_until(lambda: _true_when(all(sends()) and sum(sends()) >= BROADCAST // 3), 60,
                             "every process sending and a third of the broadcast sent")
            before = sends()
            await asyncio.sleep(0.2)
            victim = max(range(3), key=lambda index: sends()[index] - before[index])
            processes[victim].kill()
            survivors = [process for index, process in enumerate(processes) if index != victim]
            at_kill = sends()
            print(f"killed {processes[victim].name} after {sum(at_kill)} messages sent (per process: {at_kill})")

            # -- the survivors send everything else and take the victim's claims over as soon as its
            #    presence is gone (no 10-minute lease to wait for): never attempted → sent once;
            #    in flight → uncertain, not sent again
            async def chats_of(row_ids) -> set[int]:
                async with db.unit() as uow:
                    return {int(chat) for chat in (await uow.session.execute(
                        select(Account.chat_id).join(OutboxMessage, OutboxMessage.member_id == Account.member_id)
                        .where(OutboxMessage.id.in_(row_ids))
                    )).scalars()}

            async def all_settled():
                states, claimed = await outbox()
                return states if states["sent"] + states["uncertain"] == BROADCAST and not claimed else None

            states = await wait_until(all_settled, 60, "every row sent or settled as uncertain", interval=0.5)
            async with db.unit() as uow:
                uncertain = set((await uow.session.execute(
                    select(OutboxMessage.id).where(OutboxMessage.kind == "test.broadcast",
                                                   OutboxMessage.state == "uncertain")
                )).scalars())
            uncertain_chats = await chats_of(uncertain)
            received = Counter(int(m.chat_id) for m in await emulator.all_messages() if int(m.chat_id) in chats)
            texts = {int(m.chat_id): m.content for m in await emulator.all_messages() if int(m.chat_id) in chats}
            print(f"broadcast done in {time.monotonic() - started:.1f} s; uncertain: {len(uncertain)}, of them "
                  f"reached Telegram before the kill: {sum(1 for chat in uncertain_chats if received[chat])}")

            assert max(received.values()) == 1  # nothing delivered twice
            assert set(received) >= chats - uncertain_chats  # everything else delivered (exactly once)
            assert len(uncertain) == states["uncertain"] <= IN_FLIGHT_AT_MOST  # the in-flight few, not resent
            assert all(texts[chat_base + index] == f"Напоминание № {index}" for index in range(BROADCAST)
                       if chat_base + index in received)
            assert all(at_kill), at_kill  # the three schedulers shared the work

            # -- the health endpoint of each running process reports a stopped database as not ready
            db_proxy.cut()
            for process in survivors:
                status, body = await process.ready(http)
                assert status == 503 and body["checks"]["database"] is False, body
            db_proxy.restore()
            for process in survivors:
                status, body = await process.ready(http)
                assert status == 200, body

            # -- SIGTERM: a graceful stop
            assert await asyncio.gather(*(process.terminate() for process in survivors)) == [0, 0]
    finally:
        await engine.dispose()
        await db_proxy.stop()

"""Broadcaster + TelegramSender against a local fake Bot API server (real aiogram Bot)."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from scheduler.broadcaster import (
    BroadcastReport,
    Broadcaster,
    BroadcasterClosed,
    Outcome,
    Outgoing,
    RateLimit,
    Rejected,
    RetryAfter,
    SlowDown,
    Transient,
    Unreachable,
)
from scheduler.senders import TelegramSender

TOKEN = "123456:TEST"


# --------------------------------------------------------------------------
# Fake Telegram Bot API
# --------------------------------------------------------------------------


@dataclass
class Call:
    method: str
    chat_id: str
    t: float
    status: int
    fields: dict[str, object]


@dataclass
class FakeBotApi:
    """A tiny Bot API: sendMessage/sendDocument/sendPhoto/getMe with injectable failures.

    * ``retry_after_at[k] = n``: the k-th send call (0-based) starts a flood
      window of n seconds; every send call inside the window gets 429.
    * ``forbidden``: chats answered with 403 "bot was blocked by the user".
    * ``bad_request[chat] = description``: chats answered with 400.
    * ``transient[chat] = n``: the next n calls for that chat get 502
      (``transient_html``: an HTML body, as a real proxy would send).
    * ``unauthorized``: tokens answered with 401.
    Every call is recorded with its chat id, arrival time (time.monotonic) and status.
    """

    latency: tuple[float, float] = (0.0, 0.0)
    retry_after_at: dict[int, int] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    bad_request: dict[str, str] = field(default_factory=dict)
    transient: dict[str, int] = field(default_factory=dict)
    transient_html: bool = False
    unauthorized: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._send_index = 0
        self._flood_until = -math.inf
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- views ----------------------------------------------------------------

    def sends(self) -> list[Call]:
        return [c for c in self.calls if c.method.startswith("send")]

    def delivered(self) -> list[Call]:
        return [c for c in self.sends() if c.status == 200]

    def calls_to(self, chat_id: str) -> list[Call]:
        return [c for c in self.sends() if c.chat_id == chat_id]

    # -- handler --------------------------------------------------------------

    @staticmethod
    def _error(status: int, description: str, **parameters: int) -> web.Response:
        body: dict[str, object] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        token = request.match_info["token"]
        method = request.match_info["method"]
        if request.content_type == "application/json":  # Telegram takes JSON bodies and forms alike
            fields = {key: value if isinstance(value, str) else json.dumps(value)
                      for key, value in (await request.json()).items()}
        else:
            form = await request.post()
            fields = {key: form[key] for key in form}
        chat = str(fields.get("chat_id", ""))
        if self.latency[1] > 0:
            await asyncio.sleep(random.uniform(*self.latency))

        status, response = self._respond(token, method, chat, fields, now)
        self.calls.append(Call(method, chat, now, status, fields))
        return response

    def _respond(
        self, token: str, method: str, chat: str, fields: dict[str, object], now: float
    ) -> tuple[int, web.Response]:
        if token in self.unauthorized:
            return 401, self._error(401, "Unauthorized")
        if method.lower() == "getme":
            user = {"id": 123456, "is_bot": True, "first_name": "Test", "username": "test_bot"}
            return 200, web.json_response({"ok": True, "result": user})

        index = self._send_index
        self._send_index += 1
        if now < self._flood_until:
            left = max(1, math.ceil(self._flood_until - now))
            return 429, self._error(429, f"Too Many Requests: retry after {left}", retry_after=left)
        if index in self.retry_after_at:
            seconds = self.retry_after_at[index]
            self._flood_until = now + seconds
            return 429, self._error(
                429, f"Too Many Requests: retry after {seconds}", retry_after=seconds
            )
        if chat in self.forbidden:
            return 403, self._error(403, "Forbidden: bot was blocked by the user")
        if chat in self.bad_request:
            return 400, self._error(400, self.bad_request[chat])
        if self.transient.get(chat, 0) > 0:
            self.transient[chat] -= 1
            if self.transient_html:
                return 502, web.Response(
                    status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
                )
            return 502, self._error(502, "Bad Gateway")

        result: dict[str, object] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": int(chat) if chat.lstrip("-").isdigit() else 1, "type": "private"},
        }
        if method == "sendMessage":
            result["text"] = fields.get("text", "")
        elif method == "sendDocument":
            result["document"] = {"file_id": "doc1", "file_unique_id": "udoc1"}
            result["caption"] = fields.get("caption")
        elif method == "sendPhoto":
            result["photo"] = [{"file_id": "ph1", "file_unique_id": "uph1", "width": 1, "height": 1}]
            result["caption"] = fields.get("caption")
        return 200, web.json_response({"ok": True, "result": result})


# --------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------


@pytest.fixture
async def api():
    server = FakeBotApi()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(api: FakeBotApi):
    session = AiohttpSession(api=TelegramAPIServer.from_base(api.url))
    bot = Bot(TOKEN, session=session)
    yield bot
    # AiohttpSession.close() sleeps 0.25 s for TLS shutdown; plain HTTP needs none.
    if session._session is not None:
        await session._session.close()


class Results:
    """on_result recorder."""

    def __init__(self) -> None:
        self.items: list[tuple[Outgoing, Outcome, str | None, float]] = []
        self.active = 0
        self.max_active = 0

    async def __call__(self, msg: Outgoing, outcome: Outcome, message_id: str | None) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        await asyncio.sleep(0)  # give other deliveries a chance to overlap (they must not)
        self.items.append((msg, outcome, message_id, time.monotonic()))
        self.active -= 1

    def by_key(self) -> dict[str, Outcome]:
        return {msg.key: outcome for msg, outcome, _, _ in self.items}

    def key_counts(self) -> Counter[str]:
        return Counter(msg.key for msg, _, _, _ in self.items)


def make_broadcaster(
    bot: Bot, per_second: float = 200.0, per_chat: float | None = 1.0, **kwargs: object
) -> Broadcaster:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return Broadcaster(
        {"telegram": TelegramSender(bot)},
        {"telegram": RateLimit(per_second=per_second, per_chat_per_second=per_chat)},
        **kwargs,  # type: ignore[arg-type]
    )


def msg(chat: int | str, n: int = 0, text: str | None = None, **kwargs: object) -> Outgoing:
    return Outgoing(
        key=f"test:{chat}:{n}",
        transport="telegram",
        chat_id=str(chat),
        text=text if text is not None else f"hello {chat} #{n}",
        **kwargs,  # type: ignore[arg-type]
    )


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Largest number of events in any half-open window [t, t + window)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


def assert_exactly_once(api: FakeBotApi, results: Results, messages: list[Outgoing]) -> None:
    delivered = Counter((c.chat_id, c.fields.get("text")) for c in api.delivered())
    assert delivered == Counter((m.chat_id, m.text) for m in messages)
    assert results.key_counts() == Counter(m.key for m in messages)


# --------------------------------------------------------------------------
# Rate and spacing
# --------------------------------------------------------------------------


async def test_rate_limit_respected_and_reached(api: FakeBotApi, bot: Bot) -> None:
    api.latency = (0.0, 0.01)
    broadcaster = make_broadcaster(bot, per_second=60)
    messages = [msg(1000 + i) for i in range(120)]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    assert report.sent == 120 and report.total == 120 and report.attempts == 120
    assert set(results.by_key().values()) == {Outcome.SENT}
    assert_exactly_once(api, results, messages)
    assert results.max_active == 1  # on_result calls never overlap
    times = [c.t for c in api.sends()]
    assert max_in_window(times) <= 60
    achieved = (len(times) - 1) / (max(times) - min(times))
    assert achieved >= 0.9 * 60, achieved
    assert report.rate >= 0.9 * 60, report
    await broadcaster.close()


class RecordingSender:
    """In-process sender: records the moment each call starts, never fails
    unless scripted per chat (a list of exceptions/None consumed per call)."""

    transport = "telegram"

    def __init__(self, script: dict[str, list[BaseException | None]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[str, str, float]] = []

    async def send(self, m: Outgoing) -> str | None:
        self.calls.append((m.chat_id, m.key, time.monotonic()))
        steps = self.script.get(m.chat_id)
        await asyncio.sleep(0.001)
        if steps:
            step = steps.pop(0)
            if step is not None:
                raise step
        return f"m{len(self.calls)}"

    def keys(self) -> list[str]:
        return [key for _, key, _ in self.calls]


@pytest.mark.parametrize("burst", [1, 20])
async def test_pacer_precision(burst: int) -> None:
    """Release times: never above the limit in any 1-s window, >= 95% of it overall."""
    sender = RecordingSender()
    broadcaster = Broadcaster(
        {"telegram": sender},
        {"telegram": RateLimit(per_second=300, per_chat_per_second=None, burst=burst)},
    )
    messages = [msg(i) for i in range(400)]
    report = await broadcaster.send_many(messages, Results())

    times = [t for _, _, t in sender.calls]
    assert report.sent == 400
    assert max_in_window(times) <= 300
    assert report.rate >= 0.95 * 300, report
    await broadcaster.close()


async def test_per_chat_spacing_and_order(api: FakeBotApi, bot: Bot) -> None:
    broadcaster = make_broadcaster(bot, per_second=100, per_chat=4)  # 0.25 s per chat
    one_chat = [msg(777, n) for n in range(5)]
    others = [msg(2000 + i) for i in range(20)]
    messages = one_chat[:2] + others[:10] + one_chat[2:] + others[10:]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    assert report.sent == 25
    assert_exactly_once(api, results, messages)
    calls = api.calls_to("777")
    assert [c.fields["text"] for c in calls] == [m.text for m in one_chat]  # source order
    gaps = [b.t - a.t for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= 0.25 - 0.01, gaps
    # The slow chat does not hold up the others.
    last_other = max(c.t for c in api.sends() if c.chat_id != "777")
    assert last_other < calls[2].t
    # on_result of a chat's message is recorded before its next message is sent.
    done_at = {m.key: t for m, _, _, t in results.items}
    for m, call in zip(one_chat[1:], calls[1:]):
        previous = one_chat[one_chat.index(m) - 1]
        assert done_at[previous.key] <= call.t
    await broadcaster.close()


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------


async def test_retry_after_pauses_everything_and_resumes(api: FakeBotApi, bot: Bot) -> None:
    api.retry_after_at = {10: 1}
    broadcaster = make_broadcaster(bot, per_second=60)
    messages = [msg(3000 + i) for i in range(40)]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    assert report.sent == 40 and report.failed == 0
    assert report.pauses >= 1
    assert_exactly_once(api, results, messages)
    sends = api.sends()
    flood_start = sends[10].t
    assert sends[10].status == 429
    throttled = [c for c in sends if c.status == 429]
    # Only calls already in flight hit the window; then nothing for >= retry_after.
    assert all(c.t < flood_start + 0.1 for c in throttled)
    after = [c for c in sends if c.t > flood_start + 0.1]
    assert after and after[0].t >= flood_start + 1.0
    # Resumes with the throttled message(s) before any fresh one.
    throttled_chats = [c.chat_id for c in throttled]
    assert [c.chat_id for c in after[: len(throttled)]] == throttled_chats
    assert throttled_chats[0] == messages[10].chat_id
    await broadcaster.close()


async def test_forbidden_is_unreachable_and_not_retried(api: FakeBotApi, bot: Bot) -> None:
    api.forbidden = {"4003", "4007"}
    api.bad_request = {"4005": "Bad Request: chat not found", "4006": "Bad Request: message is too long"}
    broadcaster = make_broadcaster(bot, per_chat=None)
    messages = [msg(4000 + i) for i in range(10)] + [msg(4003, 1)]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    outcomes = results.by_key()
    assert outcomes[msg(4003).key] == Outcome.UNREACHABLE
    assert outcomes[msg(4003, 1).key] == Outcome.UNREACHABLE  # skipped, same run
    assert outcomes[msg(4007).key] == Outcome.UNREACHABLE
    assert outcomes[msg(4005).key] == Outcome.UNREACHABLE
    assert outcomes[msg(4006).key] == Outcome.REJECTED
    assert len(api.calls_to("4003")) == 1
    assert len(api.calls_to("4007")) == 1
    assert len(api.calls_to("4006")) == 1
    assert (report.sent, report.unreachable, report.rejected, report.failed) == (6, 4, 1, 0)
    assert results.key_counts() == Counter(m.key for m in messages)
    await broadcaster.close()


@pytest.mark.parametrize("html", [False, True])
async def test_transient_then_success(api: FakeBotApi, bot: Bot, html: bool) -> None:
    api.transient = {"5001": 2}
    api.transient_html = html
    broadcaster = make_broadcaster(bot, per_chat=None)
    messages = [msg(5000 + i) for i in range(5)]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    assert report.sent == 5 and report.retries == 2
    assert [c.status for c in api.calls_to("5001")] == [502, 502, 200]
    assert_exactly_once(api, results, messages)
    await broadcaster.close()


async def test_transient_forever_fails_after_max_retries(api: FakeBotApi, bot: Bot) -> None:
    api.transient = {"6001": 10_000}
    broadcaster = make_broadcaster(bot, per_chat=None, max_retries=3)
    messages = [msg(6000 + i) for i in range(4)]
    results = Results()

    report = await broadcaster.send_many(messages, results)

    assert results.by_key()[msg(6001).key] == Outcome.FAILED
    assert len(api.calls_to("6001")) == 1 + 3
    assert (report.sent, report.failed) == (3, 1)
    assert results.key_counts() == Counter(m.key for m in messages)
    await broadcaster.close()


async def test_bad_token_stops_the_transport(api: FakeBotApi) -> None:
    api.unauthorized = {"999:BAD"}
    session = AiohttpSession(api=TelegramAPIServer.from_base(api.url))
    bad_bot = Bot("999:BAD", session=session)
    broadcaster = Broadcaster(
        {"telegram": TelegramSender(bad_bot, owns_bot=True)},
        {"telegram": RateLimit(200, None)},
        concurrency=1,
    )
    results = Results()
    report = await broadcaster.send_many([msg(i) for i in range(5)], results)
    assert report.failed == 5 and len(api.sends()) == 1
    await broadcaster.close()  # owns_bot=True: closes the bot's HTTP session
    assert session._session is None or session._session.closed


async def test_document_photo_buttons_and_send_one(api: FakeBotApi, bot: Bot) -> None:
    broadcaster = make_broadcaster(bot, per_chat=None)
    keyboard = ((("Yes", "rsvp:1:yes"), ("No", "rsvp:1:no")), (("Later", "rsvp:1:later"),))
    assert await broadcaster.send_one(msg(7001, text="<b>Meeting</b>", buttons=keyboard)) == Outcome.SENT
    assert await broadcaster.send_one(msg(7002, text="Plan", document=("plan.xlsx", b"PK\x03\x04"))) == (
        Outcome.SENT
    )
    assert await broadcaster.send_one(msg(7003, text="", photo=("chart.png", b"\x89PNG"))) == Outcome.SENT

    text_call, doc_call, photo_call = api.sends()
    assert text_call.method == "sendMessage" and text_call.fields["parse_mode"] == "HTML"
    markup = json.loads(str(text_call.fields["reply_markup"]))
    assert [[b["callback_data"] for b in row] for row in markup["inline_keyboard"]] == [
        ["rsvp:1:yes", "rsvp:1:no"],
        ["rsvp:1:later"],
    ]
    assert doc_call.method == "sendDocument" and doc_call.fields["caption"] == "Plan"
    # aiogram sends files as "attach://<name>" plus a multipart file part.
    files = [v for v in doc_call.fields.values() if hasattr(v, "filename")]
    assert [f.filename for f in files] == ["plan.xlsx"]  # type: ignore[attr-defined]
    assert str(doc_call.fields["document"]).startswith("attach://")
    assert photo_call.method == "sendPhoto" and "caption" not in photo_call.fields
    await broadcaster.close()


# --------------------------------------------------------------------------
# Policy details, with an in-process sender
# --------------------------------------------------------------------------


def scripted(sender: RecordingSender, **kwargs: object) -> Broadcaster:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return Broadcaster(
        {"telegram": sender},
        {"telegram": RateLimit(500, None)},
        **kwargs,  # type: ignore[arg-type]
    )


async def test_slow_down_and_retry_after_do_not_count_as_failures() -> None:
    sender = RecordingSender({"1": [SlowDown(0.05), RetryAfter(0.05), None]})
    broadcaster = scripted(sender, max_retries=0, retry_after_margin=0.0)
    report = await broadcaster.send_many([msg(1)], Results())
    assert report.sent == 1 and report.pauses == 2 and len(sender.calls) == 3
    await broadcaster.close()


async def test_long_chat_flood_wait_fails_now_and_skips_chat() -> None:
    sender = RecordingSender({"1": [RetryAfter(3600, scope="chat")]})
    broadcaster = scripted(sender, max_pause=60)
    results = Results()
    report = await broadcaster.send_many([msg(1, 0), msg(2), msg(1, 1)], results)
    assert results.by_key() == {
        msg(1, 0).key: Outcome.FAILED,
        msg(2).key: Outcome.SENT,
        msg(1, 1).key: Outcome.FAILED,
    }
    assert sender.keys().count(msg(1, 0).key) == 1 and msg(1, 1).key not in sender.keys()
    assert (report.sent, report.failed) == (1, 2)
    await broadcaster.close()


async def test_sender_crash_is_failed_without_retry_and_timeout_is_transient() -> None:
    sender = RecordingSender({"1": [ValueError("bug")], "2": [asyncio.TimeoutError(), None]})
    broadcaster = scripted(sender)
    results = Results()
    await broadcaster.send_many([msg(1), msg(2)], results)
    assert results.by_key() == {msg(1).key: Outcome.FAILED, msg(2).key: Outcome.SENT}
    assert sender.keys().count(msg(1).key) == 1 and sender.keys().count(msg(2).key) == 2
    await broadcaster.close()


async def test_unreachable_rejected_and_duplicates_from_async_source() -> None:
    sender = RecordingSender({"1": [Unreachable("gone")], "2": [Rejected("bad")]})
    broadcaster = scripted(sender)

    async def source():
        for m in [msg(1), msg(2), msg(3), msg(3), msg(1, 1)]:
            yield m

    results = Results()
    report = await broadcaster.send_many(source(), results)
    assert report.duplicates == 1
    assert (report.sent, report.unreachable, report.rejected) == (1, 2, 1)
    assert results.key_counts() == Counter([msg(1).key, msg(2).key, msg(3).key, msg(1, 1).key])
    assert sorted(sender.keys()) == sorted([msg(1).key, msg(2).key, msg(3).key])  # 1 once, dup once
    await broadcaster.close()


async def test_on_result_error_stops_the_run() -> None:
    sender = RecordingSender()
    broadcaster = Broadcaster({"telegram": sender}, {"telegram": RateLimit(50, None)})
    seen: list[str] = []

    async def on_result(m: Outgoing, outcome: Outcome, message_id: str | None) -> None:
        seen.append(m.key)
        if len(seen) == 3:
            raise RuntimeError("database is down")

    with pytest.raises(RuntimeError, match="database is down"):
        await broadcaster.send_many([msg(i) for i in range(100)], on_result)
    # Whatever was sent got its on_result; nothing else was sent.
    assert len(sender.calls) <= 5
    assert sorted(seen) == sorted(sender.keys())
    await broadcaster.close()


async def test_close_abandons_waiting_messages() -> None:
    sender = RecordingSender({"1": [RetryAfter(30)]})
    broadcaster = scripted(sender, concurrency=1)
    results = Results()
    run = asyncio.create_task(broadcaster.send_many([msg(1), msg(2), msg(3)], results))
    while not sender.calls:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await broadcaster.close()
    report: BroadcastReport = await asyncio.wait_for(run, 2)
    assert report.abandoned == 3 and results.items == []
    with pytest.raises(BroadcasterClosed):
        await broadcaster.send_one(msg(4))


async def test_retry_is_bounded_for_endless_transient_errors() -> None:
    sender = RecordingSender({"1": [Transient("x")] * 10})
    broadcaster = scripted(sender, max_retries=2)
    assert await broadcaster.send_one(msg(1)) == Outcome.FAILED
    assert len(sender.calls) == 3
    await broadcaster.close()

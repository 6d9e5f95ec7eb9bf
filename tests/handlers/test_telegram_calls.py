"""The lean JSON calls behind getUpdates and replies deliver what they were given (through the Bot
API emulator) and fail exactly as aiogram's own calls do; polling survives what a proxy or a
malformed update throws at it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiogram import Dispatcher
from aiogram.types import Message
from aiohttp import web
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNetworkError
from aiogram.methods import SendMessage

from dialogs.model import OutButton, OutMessage, Reply
from handlers.telegram.polling import DurablePolling
from handlers.telegram.render import send_reply
from handlers.telegram.session import build_bot, call_json


@pytest.fixture
async def bot(emulator):
    bot = build_bot(emulator.token, emulator.base_url)
    yield bot
    await bot.session.close()


async def test_a_reply_arrives_with_its_text_and_keyboard(bot, emulator):
    chat = emulator.chat(880_001)
    await chat.send("/start")
    text = "Выберите <b>школу</b> & «класс»\nвторая строка"
    await send_reply(bot, chat.chat_id, Reply([OutMessage(text, [[OutButton("Школа №1", "a1")],
                                                                  [OutButton("Назад", "b2"), OutButton("Меню", "c3")]])]))

    [message] = await chat.messages(last=1)
    assert message.content == text  # plain text: nothing parsed as HTML
    assert message.inline_keyboard == [[{"text": "Школа №1", "callback_data": "a1"}],
                                       [{"text": "Назад", "callback_data": "b2"}, {"text": "Меню", "callback_data": "c3"}]]


async def test_errors_are_aiograms_exceptions(bot, emulator):
    chat = emulator.chat(880_002)
    await chat.send("/start")

    await emulator.inject_failure("sendMessage", 403, chat_id=chat.chat_id)
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await call_json(bot, SendMessage, {"chat_id": chat.chat_id, "text": "x"})

    await emulator.inject_failure("sendMessage", 400, chat_id=chat.chat_id, description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await call_json(bot, SendMessage, {"chat_id": chat.chat_id, "text": "x"})

    assert await call_json(bot, SendMessage, {"chat_id": chat.chat_id, "text": "снова"}) is not None
    assert [message.content for message in await chat.messages(last=1)] == ["снова"]


async def test_an_unreachable_api_is_a_network_error(emulator):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bot = build_bot(emulator.token, f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(TelegramNetworkError):
            await call_json(bot, SendMessage, {"chat_id": 1, "text": "x"})
    finally:
        await bot.session.close()


class HtmlThenFine:
    """A Bot API behind a proxy that answers the first getUpdates with an HTML error page, then
    one malformed update beside a good one, then nothing."""

    def __init__(self) -> None:
        self.get_updates = 0
        self.handled: list[int] = []

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method != "getUpdates":
            return web.json_response({"ok": True, "result": True})
        self.get_updates += 1
        if self.get_updates == 1:
            return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
        if self.get_updates == 2:
            good = {"update_id": 7, "message": {"message_id": 1, "date": 1, "text": "привет",
                                               "chat": {"id": 5, "type": "private"}}}
            return web.json_response({"ok": True, "result": [{"update_id": 6, "message": "not a message"}, good]})
        return web.json_response({"ok": True, "result": []})


async def test_polling_survives_a_proxy_error_page_and_a_malformed_update(db):
    api = HtmlThenFine()
    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", api.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    bot = build_bot("1:fake", f"http://127.0.0.1:{port}")
    dispatcher = Dispatcher()

    @dispatcher.message()
    async def note(message: Message) -> None:
        api.handled.append(message.message_id)

    polling = DurablePolling(bot, dispatcher, db, timeout=1)
    task = asyncio.create_task(polling.run())
    try:
        for _ in range(100):
            if api.get_updates >= 3 and api.handled:
                break
            await asyncio.sleep(0.05)
    finally:
        polling.stop()
        await asyncio.wait_for(task, 10)
        await bot.session.close()
        await runner.cleanup()

    assert api.get_updates >= 3 and api.handled == [1]  # retried after the page; the good update handled
    async with db.unit() as uow:  # the good one journaled (a plain handler, not the engine, never marks it
        # handled); the malformed one skipped, not journaled
        assert [update_id for update_id, _ in await uow.inbox.pending("telegram")] == ["7"]

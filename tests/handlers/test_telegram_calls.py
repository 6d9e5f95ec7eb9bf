"""The lean JSON call behind replies fails exactly as aiogram's own calls do, and delivers what it
was given (through the Bot API emulator)."""

from __future__ import annotations

import socket

import pytest
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramNetworkError
from aiogram.methods import SendMessage

from dialogs.model import OutButton, OutMessage, Reply
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

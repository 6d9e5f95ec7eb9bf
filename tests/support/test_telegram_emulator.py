"""Self-tests of the Telegram Bot API emulator against a tiny aiogram 3 bot."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from tests.support.telegram_emulator import EmulatorChat, TelegramEmulator, running_emulator

pytestmark = pytest.mark.timeout(30)

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def make_router(events: list) -> Router:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        kb = InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text="Да", callback_data="yes")],
                [InlineKeyboardButton(text="Нет", callback_data="no")],
            ]
        )
        await message.answer("<b>Привет</b>, &lt;учитель&gt;!", reply_markup=kb)

    @router.message(Command("sum"))
    async def sum_cmd(message: Message, command: CommandObject) -> None:
        nums = [int(x) for x in (command.args or "").split()]
        await message.answer(f"sum={sum(nums)}")

    @router.message(Command("doc"))
    async def doc_cmd(message: Message) -> None:
        await message.answer_document(
            BufferedInputFile("Отчёт;часть 1\n".encode(), filename="Отчёт.csv"), caption="<i>Отчёт</i>"
        )
        await message.answer_photo(BufferedInputFile(PNG_1x1, filename="chart.png"), caption="График")

    @router.callback_query(F.data == "yes")
    async def on_yes(cb: CallbackQuery) -> None:
        events.append(("callback", cb.data, cb.chat_instance, cb.message.message_id))
        await cb.message.edit_text("Вы выбрали: да")
        await cb.answer("Принято", show_alert=True)

    @router.callback_query()
    async def on_other(cb: CallbackQuery) -> None:
        events.append(("callback-other", cb.data, type(cb.message).__name__))
        await cb.answer()

    @router.message(F.photo)
    async def on_photo(message: Message) -> None:
        events.append(("photo", message.photo[-1].file_id, message.text))
        await message.answer("Фото получено")

    @router.message(F.sticker)
    async def on_sticker(message: Message) -> None:
        await message.answer(f"Стикер {message.sticker.emoji}")

    @router.message(F.document)
    async def on_document(message: Message, bot: Bot) -> None:
        buf = io.BytesIO()
        await bot.download(message.document, destination=buf)
        await message.answer(f"got {message.document.file_name}: {buf.getvalue().decode()}")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        events.append(("text", message.text))
        await message.answer(message.text)

    return router


@pytest.fixture
async def emu() -> TelegramEmulator:
    async with running_emulator() as emulator:
        yield emulator


@pytest.fixture
async def env(emu: TelegramEmulator):
    """A running aiogram bot polling the emulator: yields (emu, bot, events)."""
    events: list = []
    dp = Dispatcher()
    dp.include_router(make_router(events))
    bot = emu.make_bot(default=DefaultBotProperties(parse_mode="HTML"))
    async with emu.polling(dp, bot):
        yield emu, bot, events


async def test_echo_text(env) -> None:
    emu, _bot, events = env
    chat = emu.chat(1001)
    await chat.send("Привет, бот")
    reply = await chat.wait_reply()
    assert reply.plain_text == "Привет, бот"
    assert reply.method == "sendMessage"
    assert events == [("text", "Привет, бот")]
    assert await chat.last_text() == "Привет, бот"


async def test_command_and_html(env) -> None:
    emu, _bot, _ = env
    chat = emu.chat(1002, first_name="Анна", username="anna")
    await chat.send("/sum 2 3 4")
    assert (await chat.wait_reply()).plain_text == "sum=9"

    await chat.send("/start")
    reply = await chat.wait_reply(after=1)
    assert reply.text == "<b>Привет</b>, &lt;учитель&gt;!"
    assert reply.plain_text == "Привет, <учитель>!"
    assert reply.parse_mode == "HTML"
    assert await chat.buttons() == ["Да", "Нет"]


async def test_inline_button_reaches_callback_handler(env) -> None:
    emu, _bot, events = env
    chat = emu.chat(1003)
    await chat.send("/start")
    start_msg = await chat.wait_reply()
    cb_id = await chat.press("Да")
    edited = await chat.wait_reply(after=1)
    assert edited.message_id == start_msg.message_id
    assert edited.edited and edited.plain_text == "Вы выбрали: да"
    assert edited.buttons == []  # editMessageText without reply_markup drops the keyboard
    assert edited.history[0]["plain_text"] == "Привет, <учитель>!"
    answer = await chat.wait_callback_answer(cb_id)
    assert answer["text"] == "Принято" and answer["show_alert"] is True
    kind, data, chat_instance, mid = events[0]
    assert (kind, data, mid) == ("callback", "yes", start_msg.message_id)
    assert chat_instance

    with pytest.raises(AssertionError, match="Available buttons"):
        await chat.press("Нет такой")


async def test_forged_callback_on_unknown_message(env) -> None:
    emu, _bot, events = env
    chat = emu.chat(1004)
    cb_id = await chat.press_data("forged", message_id=999_999)
    await chat.wait_callback_answer(cb_id)
    assert events == [("callback-other", "forged", "InaccessibleMessage")]


async def test_long_polling_does_not_busy_loop(env) -> None:
    emu, _bot, _ = env
    chat = emu.chat(1005)
    await chat.send("warm up")
    await chat.wait_reply()
    before = (await emu.stats())["by_method"].get("getUpdates", 0)
    await asyncio.sleep(1.0)
    after = (await emu.stats())["by_method"].get("getUpdates", 0)
    assert after - before < 5
    # and a new message is still delivered promptly while a long poll is pending
    t0 = time.monotonic()
    await chat.send("fast?")
    await chat.wait_reply()
    assert time.monotonic() - t0 < 1.0


async def test_offset_honoured_no_duplicates(env) -> None:
    emu, _bot, events = env
    chat = emu.chat(1006)
    for i in range(5):
        await chat.send(f"m{i}")
    await chat.wait_for(5)
    await asyncio.sleep(0.3)
    assert sorted(e[1] for e in events) == [f"m{i}" for i in range(5)]
    assert len(await chat.messages()) == 5
    calls = await emu.calls("getUpdates")
    assert len(calls) < 10


async def test_offset_semantics_raw(emu: TelegramEmulator) -> None:
    bot = emu.make_bot()
    try:
        chat = emu.chat(1007)
        await chat.send("a")
        await chat.send("b")
        first = await bot.get_updates(timeout=0)
        assert [u.message.text for u in first] == ["a", "b"]
        again = await bot.get_updates(timeout=0)  # not confirmed yet -> delivered again
        assert [u.update_id for u in again] == [u.update_id for u in first]
        confirmed = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
        assert confirmed == []
        assert await bot.get_updates(timeout=0) == []
        t0 = time.monotonic()
        assert await bot.get_updates(timeout=1) == []
        assert 0.8 < time.monotonic() - t0 < 2.5
    finally:
        await bot.session.close()


async def test_documents_and_photos_stored_with_bytes(env) -> None:
    emu, _bot, _ = env
    chat = emu.chat(1008)
    await chat.send("/doc")
    await chat.wait_for(2)
    [doc] = await chat.documents()
    assert doc.file_name == "Отчёт.csv"
    assert doc.data == "Отчёт;часть 1\n".encode()
    assert doc.file_size == len(doc.data)
    assert doc.mime_type == "text/csv"
    assert doc.caption == "Отчёт"
    [photo] = await chat.photos()
    assert photo.data == PNG_1x1
    assert (photo.width, photo.height) == (1, 1)
    assert photo.caption == "График"
    msgs = await chat.messages()
    assert [m.method for m in msgs] == ["sendDocument", "sendPhoto"]
    assert msgs[0].text is None and msgs[0].caption == "<i>Отчёт</i>"


async def test_user_document_download(env) -> None:
    emu, _bot, _ = env
    chat = emu.chat(1009)
    await chat.send_document("list.txt", b"hello", mime_type="text/plain")
    assert (await chat.wait_reply()).plain_text == "got list.txt: hello"


async def test_too_long_message_rejected(emu: TelegramEmulator) -> None:
    bot = emu.make_bot()
    try:
        with pytest.raises(TelegramBadRequest, match="message is too long"):
            await bot.send_message(77, "x" * 4097)
        ok = await bot.send_message(77, "x" * 4096)
        assert ok.message_id > 0
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(77, "   ")
        with pytest.raises(TelegramBadRequest, match="caption is too long"):
            await bot.send_document(77, BufferedInputFile(b"1", "a.txt"), caption="c" * 1025)
        with pytest.raises(TelegramBadRequest, match="can't parse entities"):
            await bot.send_message(77, "a < b <br>", parse_mode="HTML")
        stats = await emu.stats()
        statuses = [c["status"] for c in stats["calls"] if c["method"] in ("sendMessage", "sendDocument")]
        assert statuses == [400, 200, 400, 400, 400]
    finally:
        await bot.session.close()


async def test_long_callback_data_rejected(emu: TelegramEmulator) -> None:
    bot = emu.make_bot()
    try:
        ok_kb = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="ok", callback_data="ы" * 32)]])
        await bot.send_message(77, "64 bytes is fine", reply_markup=ok_kb)
        bad_kb = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="bad", callback_data="x" * 64 + "ы")]]
        )
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(77, "65 bytes", reply_markup=bad_kb)
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(
                77,
                "33 cyrillic letters = 66 bytes",
                reply_markup=InlineKeyboardMarkup(
                    inline_keyboard=[[InlineKeyboardButton(text="bad", callback_data="ы" * 33)]]
                ),
            )
    finally:
        await bot.session.close()


async def test_injected_429_and_403(emu: TelegramEmulator) -> None:
    bot = emu.make_bot()
    try:
        await emu.inject_failure("sendMessage", 429, retry_after=7)
        with pytest.raises(TelegramRetryAfter) as exc:
            await bot.send_message(55, "hi")
        assert exc.value.retry_after == 7
        assert "retry after 7" in exc.value.message
        await bot.send_message(55, "hi")  # times=1: next call succeeds

        await emu.inject_failure("sendMessage", 403, chat_id=56, times=None)
        await bot.send_message(55, "other chat unaffected")
        for _ in range(2):
            with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
                await bot.send_message(56, "hi")
        await emu.reset_failures()
        await bot.send_message(56, "unblocked")

        stats = await emu.stats()
        assert stats["by_method"]["sendMessage"] == 6
        assert stats["by_chat"]["56"] == 3
        calls = await emu.calls("sendMessage", chat_id=56)
        assert [c["status"] for c in calls] == [403, 403, 200]
        assert all(isinstance(c["t_ms"], (int, float)) for c in calls)
    finally:
        await bot.session.close()


async def test_photo_and_sticker_updates_without_text(env) -> None:
    emu, _bot, events = env
    chat = emu.chat(1010)
    await chat.send_photo()
    assert (await chat.wait_reply()).plain_text == "Фото получено"
    kind, file_id, text = events[0]
    assert kind == "photo" and file_id and text is None
    await chat.send_sticker("🔥")
    assert (await chat.wait_reply()).plain_text == "Стикер 🔥"


async def test_misc_bot_methods(emu: TelegramEmulator) -> None:
    bot = emu.make_bot()
    try:
        me = await bot.get_me()
        assert me.is_bot and me.id == 123456
        assert await bot.set_my_commands([BotCommand(command="start", description="Начать")])
        assert [c.command for c in await bot.get_my_commands()] == ["start"]
        assert await emu.commands() == [{"command": "start", "description": "Начать"}]
        with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
            await bot.set_my_commands([BotCommand(command="Start", description="x")])
        assert await bot.delete_my_commands()
        assert await bot.get_my_commands() == []
        assert await bot.send_chat_action(77, "typing")
        assert await bot.set_chat_menu_button()

        msg = await bot.send_message(77, "one")
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_text("one", chat_id=77, message_id=msg.message_id)
        kb = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="b", callback_data="b")]])
        edited = await bot.edit_message_reply_markup(chat_id=77, message_id=msg.message_id, reply_markup=kb)
        assert edited.reply_markup.inline_keyboard[0][0].callback_data == "b"
        assert await bot.delete_message(77, msg.message_id)
        with pytest.raises(TelegramBadRequest, match="message to delete not found"):
            await bot.delete_message(77, msg.message_id)
        chat77 = EmulatorChat(emu, user_id=77)
        assert await chat77.messages() == []
        assert len(await chat77.messages(include_deleted=True)) == 1
    finally:
        await bot.session.close()


async def test_package_client_routes_still_work(emu: TelegramEmulator) -> None:
    """The package's own /sendMessage + /getUpdates client routes keep working."""
    import aiohttp

    bot = emu.make_bot()
    try:
        async with aiohttp.ClientSession() as http:
            msg = {
                "botToken": emu.token,
                "from": {"id": 5, "first_name": "X", "is_bot": False},
                "chat": {"id": 5, "first_name": "X", "type": "private"},
                "text": "stock",
            }
            async with http.post(emu.base_url + "/sendMessage", json=msg) as r:
                assert r.status == 200
            [upd] = await bot.get_updates(timeout=0)
            assert upd.message.text == "stock" and upd.message.chat.id == 5
            sent = await bot.send_message(5, "reply", reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="go", callback_data="go")]]))
            async with http.post(emu.base_url + "/getUpdates", json={"token": emu.token, "chatId": 5}) as r:
                body = await r.json()
            assert [u["message"]["text"] for u in body["result"]] == ["reply"]
            # the stock client's callback (no message_id/date) gets the real bot message
            cb = {"botToken": emu.token, "from": msg["from"], "message": {"chat": msg["chat"]}, "data": "go"}
            async with http.post(emu.base_url + "/sendCallback", json=cb) as r:
                assert r.status == 200
            [cb_upd] = await bot.get_updates(offset=upd.update_id + 1, timeout=1)
            assert cb_upd.callback_query.message.message_id == sent.message_id
            assert cb_upd.callback_query.chat_instance
            assert await bot.answer_callback_query(cb_upd.callback_query.id)
    finally:
        await bot.session.close()

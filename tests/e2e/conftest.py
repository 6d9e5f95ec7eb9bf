"""End-to-end fixtures: the real aiogram bot polling a Telegram Bot API emulator over HTTP."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import pytest
from aiogram import Bot, Dispatcher

from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from handlers.telegram.polling import DurablePolling
from handlers.telegram.router import build_router
from handlers.telegram.session import build_bot
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.senders import TelegramSender
from tests.support.telegram_emulator import EmulatorChat, TelegramEmulator


@dataclass
class RunningBot:
    """A bot process in miniature: aiogram Bot + Dispatcher + our durable polling, as a task."""

    emulator: TelegramEmulator
    db: object
    clock: object
    bot: Bot | None = None
    polling: DurablePolling | None = None
    task: asyncio.Task | None = None

    async def start(self) -> None:
        self.bot = build_bot(self.emulator.token, self.emulator.base_url)
        dispatcher = Dispatcher()
        dispatcher["engine"] = DialogEngine(self.db, build_registry(), clock=self.clock)
        dispatcher.include_router(build_router())
        self.polling = DurablePolling(self.bot, dispatcher, self.db, timeout=1)
        self.task = asyncio.create_task(self.polling.run())

    async def stop(self) -> None:
        if self.polling is not None:
            self.polling.stop()
            await asyncio.wait_for(self.task, timeout=10)
            await self.bot.session.close()
            self.polling = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def chat(self, user_id: int | None = None) -> EmulatorChat:
        return self.emulator.chat(user_id)


@pytest.fixture
async def broadcaster(emulator):
    """The scheduler's broadcaster towards the emulator, limits lifted (tests run the outbox themselves)."""
    bot = emulator.make_bot()
    sending = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})
    yield sending
    await sending.close()
    await bot.session.close()


@pytest.fixture
async def tg(emulator, db, clock):
    """A running bot on the test database; `tg.chat()` is a new user's chat with it."""
    running = RunningBot(emulator, db, clock)
    await running.start()
    yield running
    await running.stop()


async def say(chat: EmulatorChat, text: str) -> str:
    """Send text and return the plain text of the bot's last message once it is quiet."""
    await chat.send(text)
    await chat.wait_reply()
    messages = await chat.wait_idle()
    return messages[-1].content


async def tap(chat: EmulatorChat, label: str) -> str:
    """Press a button by label and return the bot's last message once it is quiet."""
    await chat.press(label)
    await chat.wait_reply()
    messages = await chat.wait_idle()
    return messages[-1].content

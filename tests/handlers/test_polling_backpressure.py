"""Durable polling takes from Telegram no more updates than it can start handling."""

from __future__ import annotations

import asyncio

import pytest
from aiogram import Dispatcher, Router
from aiogram.types import Message
from sqlalchemy import func, select

from handlers.telegram.polling import DurablePolling
from storage.models import InboxUpdate

pytestmark = pytest.mark.timeout(60)

USERS = 12
SLOTS = 3


async def journaled(db) -> int:
    async with db.unit() as uow:
        return (await uow.session.execute(select(func.count()).select_from(InboxUpdate))).scalar_one()


async def test_updates_beyond_the_free_slots_wait_at_telegram_not_in_the_process(db, emulator):
    await emulator.clear()
    release = asyncio.Event()
    active: list[int] = [0, 0]  # now, at most
    seen: list[str] = []
    router = Router()

    @router.message()
    async def slow(message: Message) -> None:
        active[0] += 1
        active[1] = max(active[1], active[0])
        await release.wait()
        seen.append(message.text)
        active[0] -= 1

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot = emulator.make_bot()
    polling = DurablePolling(bot, dispatcher, db, timeout=1, concurrency=SLOTS)
    task = asyncio.create_task(polling.run())
    try:
        for index in range(USERS):
            await emulator.chat(70_000 + index).send(f"сообщение {index}")
        for _ in range(100):
            if active[0] == SLOTS:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time enough to fetch more, if it would
        in_process = await journaled(db)
        release.set()
        for _ in range(200):
            if len(seen) == USERS:
                break
            await asyncio.sleep(0.05)
    finally:
        release.set()
        polling.stop()
        await asyncio.wait_for(task, timeout=10)
        await bot.session.close()

    assert in_process == SLOTS  # the rest were still at Telegram
    assert active[1] == SLOTS
    assert sorted(seen) == sorted(f"сообщение {index}" for index in range(USERS))
    assert await journaled(db) == USERS

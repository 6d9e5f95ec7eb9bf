"""The update timer: every update through the dispatcher is timed and counted."""

from __future__ import annotations

from datetime import datetime, timezone

from aiogram import Bot, Dispatcher, Router
from aiogram.types import Chat, Message, Update, User

from bot.metrics import REGISTRY
from handlers.telegram.timing import UpdateTimer


def text_update(update_id: int = 1) -> Update:
    user = User(id=42, is_bot=False, first_name="Тест")
    message = Message(
        message_id=1, date=datetime(2026, 11, 26, tzinfo=timezone.utc), chat=Chat(id=42, type="private"),
        from_user=user, text="привет",
    )
    return Update(update_id=update_id, message=message)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"transport": "telegram"}) or 0.0


def dispatcher_with(timer: UpdateTimer, seen: list[str]) -> Dispatcher:
    router = Router()

    @router.message()
    async def remember(message: Message) -> None:  # sends nothing: the bot's session is never used
        seen.append(message.text)

    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(timer)
    dispatcher.include_router(router)
    return dispatcher


async def test_a_handled_update_leaves_one_sample_and_counts_in_the_metrics():
    samples: list[float] = []
    seen: list[str] = []
    dispatcher = dispatcher_with(UpdateTimer(samples), seen)
    bot = Bot("123456:TEST-token")
    handled_before = metric("bot_updates_handled_total")
    observed_before = metric("bot_reply_seconds_count")

    await dispatcher.feed_update(bot, text_update())

    assert seen == ["привет"]
    assert len(samples) == 1 and 0 <= samples[0] < 1
    assert metric("bot_updates_handled_total") == handled_before + 1
    assert metric("bot_reply_seconds_count") == observed_before + 1
    await bot.session.close()

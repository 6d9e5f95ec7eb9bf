"""Events end to end: real aiogram over HTTP through the emulator, reminders by the dispatcher on a simulated clock."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from dialogs.model import ExternalId
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.senders import TelegramSender
from storage.services import consent as consent_service
from storage.services import members as member_service
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.e2e.conftest import say, tap

MSK = ZoneInfo("Europe/Moscow")
QUIET = parse_quiet_hours("22:00-08:00")


@pytest.fixture
async def broadcaster(emulator):
    bot = emulator.make_bot()
    sending = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})
    yield sending
    await sending.close()
    await bot.session.close()


async def teacher_in_db(db, chat, clock) -> None:
    """A registered young teacher behind this Telegram chat (registration itself has its own e2e tests)."""
    who = ExternalId("telegram", str(chat.user_id), str(chat.chat_id))
    async with db.unit() as uow:
        municipality = await uow.reference.municipality_by_code("vsevolozhsky")
        await consent_service.give_consent(uow, who, municipality_id=municipality.id, now=clock.now)
        await member_service.register_member(uow, who, role="teacher", full_name="Зайцева Полина Андреевна",
                                             municipality_id=municipality.id, now=clock.now)
        await uow.commit()


def label_with(message, part: str) -> str:
    return next(label for label in message.buttons if part in label)


async def test_a_coordinator_publishes_a_teacher_registers_gets_a_morning_reminder_and_the_cancellation(
    tg, db, clock, broadcaster
):
    coordinator, teacher = tg.chat(), tg.chat()
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await say(coordinator, "/start")
    await tap(coordinator, "Всеволожский район")
    await tap(coordinator, "Согласен(на)")
    await tap(coordinator, "У меня есть код приглашения")
    await say(coordinator, code)
    await say(coordinator, "Кузнецова Елена Викторовна")
    await tap(coordinator, "Всё верно")
    await say(coordinator, "/events")
    await tap(coordinator, "➕ Новое мероприятие")
    await tap(coordinator, "Клуб молодых педагогов")
    await say(coordinator, "Клуб: весенняя встреча")
    await say(coordinator, "10.12.2026 09:00")
    await say(coordinator, "11:00")
    await say(coordinator, "ВРМЦ, ауд. 12")
    await tap(coordinator, "Молодые педагоги")
    await tap(coordinator, "Без ограничений")
    await tap(coordinator, "☐ Коммуникативные")
    await tap(coordinator, "Готово ✅")
    await say(coordinator, "metod@example.org")
    card = await tap(coordinator, "Опубликовать")
    assert card.startswith("«Клуб: весенняя встреча»")

    await teacher_in_db(db, teacher, clock)
    listing = await say(teacher, "/events")
    await tap(teacher, label_with(await teacher.last_message(), "10.12 09:00"))
    after_yes = await tap(teacher, "✅ Иду")
    assert listing.startswith("Ближайшие мероприятия") and "✅ Вы записаны." in after_yes
    sent_before = len(await teacher.messages())

    # A week and a day before: two reminders. 2 hours before a 09:00 start is 07:00, in the quiet
    # hours: that one waits until 08:00.
    clock.now = datetime(2026, 12, 9, 12, 0, tzinfo=MSK).astimezone(timezone.utc)
    earlier = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    clock.now = datetime(2026, 12, 10, 7, 30, tzinfo=MSK).astimezone(timezone.utc)
    night = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    clock.now = datetime(2026, 12, 10, 8, 0, tzinfo=MSK).astimezone(timezone.utc)
    morning = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    messages = await teacher.wait_for(sent_before + 3)
    reminder = messages[-1]
    assert (earlier.sent, night.sent, morning.sent) == (2, 0, 1)
    assert messages[-3].content.startswith("Напоминание: через 7 дней, 10 декабря в 09:00")
    assert reminder.content.startswith("Напоминание: сегодня в 09:00 — «Клуб: весенняя встреча».")
    assert reminder.button("📅 Мероприятия")["callback_data"] == "go:events"

    opened = await tap(teacher, "📅 Мероприятия")
    assert opened.startswith("Ближайшие мероприятия")

    await say(coordinator, "/events")
    await tap(coordinator, label_with(await coordinator.last_message(), "10.12 09:00"))
    await tap(coordinator, "🚫 Отменить мероприятие")
    await tap(coordinator, "Да, отменить")
    count = len(await teacher.messages())
    await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    notice = (await teacher.wait_for(count + 1))[-1]
    assert notice.content.startswith("Мероприятие «Клуб: весенняя встреча» (10 декабря 2026, 09:00–11:00) отменено.")

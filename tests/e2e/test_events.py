"""Events end to end: real aiogram over HTTP through the emulator, reminders by the dispatcher on a simulated clock."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from scheduler.dispatch import dispatch_due
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.e2e.conftest import say, tap
from tests.support.people import registered_in_db, telegram_who
from tests.support.scenarios import open_event, publish_club_event, register_coordinator, telegram_actor

MSK = ZoneInfo("Europe/Moscow")
QUIET = parse_quiet_hours("22:00-08:00")


async def test_a_coordinator_publishes_a_teacher_registers_gets_a_morning_reminder_and_the_cancellation(
    tg, db, clock, broadcaster
):
    coordinator, teacher = tg.chat(), tg.chat()
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await register_coordinator(telegram_actor(coordinator), code)
    card = await publish_club_event(telegram_actor(coordinator))
    assert card.startswith("«Клуб: весенняя встреча»")

    await registered_in_db(db, telegram_who(teacher), clock.now, role="teacher", name="Зайцева Полина Андреевна")
    listing = await say(teacher, "/events")
    await open_event(telegram_actor(teacher))
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
    await open_event(telegram_actor(coordinator))
    await tap(coordinator, "🚫 Отменить мероприятие")
    await tap(coordinator, "Да, отменить")
    count = len(await teacher.messages())
    await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    notice = (await teacher.wait_for(count + 1))[-1]
    assert notice.content.startswith("Мероприятие «Клуб: весенняя встреча» (10 декабря 2026, 09:00–11:00) отменено.")

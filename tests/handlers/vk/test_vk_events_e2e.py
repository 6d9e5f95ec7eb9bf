"""Events end to end through the fake VK server: the coordinator and the teacher both in VK, reminders
sent by the outbox dispatcher through VK's messages.send on a simulated clock (as in Telegram:
tests/e2e/test_events.py); and a person who forbade the community's messages gets none.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from dialogs.flows.events import WALL_BUTTON
from scheduler.dispatch import dispatch_due
from storage.models import Account
from storage.models_outbox import OutboxMessage
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.support.people import registered_in_db, vk_who
from tests.support.scenarios import open_event, publish_club_event, register_coordinator, vk_actor, vk_broadcaster

pytestmark = pytest.mark.timeout(60)

MSK = ZoneInfo("Europe/Moscow")
QUIET = parse_quiet_hours("22:00-08:00")
COORDINATOR, TEACHER, SILENT = 300_801, 300_802, 300_803


@pytest.fixture
async def broadcaster(vk_client):
    sending = vk_broadcaster(vk_client)
    yield sending
    await sending.close()


async def coordinator_with_event(vk_person, db, clock) -> None:
    coordinator = vk_actor(vk_person(COORDINATOR))
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await register_coordinator(coordinator, code)
    card = await publish_club_event(coordinator)
    assert card.startswith("«Клуб: весенняя встреча»")
    assert WALL_BUTTON not in await coordinator.buttons()  # the engine has no VK settings here


async def teacher_signed_up(vk_person, db, clock, user_id: int):
    person = vk_person(user_id)
    await registered_in_db(db, vk_who(user_id), clock.now, role="teacher", name="Зайцева Полина Андреевна")
    listing = await vk_actor(person).say("/events")
    assert listing.startswith("Ближайшие мероприятия")
    await open_event(vk_actor(person))
    await person.tap("✅ Иду")
    assert "✅ Вы записаны." in person.text()
    return person


async def test_a_coordinator_publishes_in_vk_a_teacher_registers_and_gets_reminders_whose_button_opens_events(
    vk_person, fake, db, clock, broadcaster
):
    await coordinator_with_event(vk_person, db, clock)
    teacher = await teacher_signed_up(vk_person, db, clock, TEACHER)
    sent_before = len(fake.messages_to(TEACHER))

    # A week and a day before: two reminders. 2 hours before a 09:00 start is 07:00, in the quiet
    # hours: that one waits until 08:00.
    clock.now = datetime(2026, 12, 9, 12, 0, tzinfo=MSK).astimezone(timezone.utc)
    earlier = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    clock.now = datetime(2026, 12, 10, 7, 30, tzinfo=MSK).astimezone(timezone.utc)
    night = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    clock.now = datetime(2026, 12, 10, 8, 0, tzinfo=MSK).astimezone(timezone.utc)
    morning = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)

    reminders = fake.messages_to(TEACHER)[sent_before:]
    assert (earlier.sent, night.sent, morning.sent) == (2, 0, 1)
    assert [m["text"].split(" — ")[0] for m in reminders] == [
        "Напоминание: через 7 дней, 10 декабря в 09:00", "Напоминание: завтра в 09:00", "Напоминание: сегодня в 09:00"]
    assert reminders[2]["text"].startswith("Напоминание: сегодня в 09:00 — «Клуб: весенняя встреча».")
    [button] = fake.buttons_of(reminders[2])
    assert (button["label"], button["type"], button["payload"]) == ("📅 Мероприятия", "callback", {"t": "go:events"})

    await teacher.tap("📅 Мероприятия")

    assert teacher.text().startswith("Ближайшие мероприятия")


async def test_the_cancellation_reaches_the_vk_teacher_through_the_outbox(vk_person, fake, db, clock, broadcaster):
    await coordinator_with_event(vk_person, db, clock)
    await teacher_signed_up(vk_person, db, clock, TEACHER)
    coordinator = vk_actor(vk_person(COORDINATOR))

    await coordinator.say("/events")
    await open_event(coordinator)
    await coordinator.tap("🚫 Отменить мероприятие")
    await coordinator.tap("Да, отменить")
    await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)

    notice = fake.last_message_to(TEACHER)["text"]
    assert notice.startswith("Мероприятие «Клуб: весенняя встреча» (10 декабря 2026, 09:00–11:00) отменено.")


async def test_a_vk_user_who_forbade_messages_gets_no_reminder_and_the_row_ends_unreachable(
    vk_person, fake, db, clock, broadcaster, bot
):
    await coordinator_with_event(vk_person, db, clock)
    await teacher_signed_up(vk_person, db, clock, TEACHER)
    await teacher_signed_up(vk_person, db, clock, SILENT)
    processed = bot.processed
    await fake.user_denies(SILENT)  # «Запретить сообщения» in the community's dialog
    await bot.wait_processed(processed + 1)
    calls_before = len(fake.calls_to("messages.send"))

    clock.now = datetime(2026, 12, 9, 12, 0, tzinfo=MSK).astimezone(timezone.utc)
    report = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)

    assert report.sent == 2 and report.unreachable == 2  # the week and day reminders of each teacher
    tried = [call["params"]["peer_id"] for call in fake.calls_to("messages.send")[calls_before:]]
    assert tried == [str(TEACHER), str(TEACHER)]  # nothing was even tried for SILENT
    async with db.unit() as uow:
        account = (await uow.session.execute(select(Account).where(Account.external_id == str(SILENT)))).scalar_one()
        reminders = select(OutboxMessage.state).where(OutboxMessage.kind == "event.reminder",
                                                      OutboxMessage.member_id == account.member_id)
        states = sorted((await uow.session.execute(reminders)).scalars())
    assert states == ["pending", "unreachable", "unreachable"]  # the 2-hour one is not due yet
    assert account.unreachable_at is not None


async def test_a_vk_user_who_allowed_messages_again_gets_the_next_reminder(
    vk_person, fake, db, clock, broadcaster, bot
):
    await coordinator_with_event(vk_person, db, clock)
    await teacher_signed_up(vk_person, db, clock, SILENT)
    processed = bot.processed
    await fake.user_denies(SILENT)
    await fake.user_allows(SILENT)
    await bot.wait_processed(processed + 2)
    sent_before = len(fake.messages_to(SILENT))

    clock.now = datetime(2026, 12, 9, 12, 0, tzinfo=MSK).astimezone(timezone.utc)
    report = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)

    assert report.sent == 2 and report.unreachable == 0
    assert len(fake.messages_to(SILENT)) == sent_before + 2

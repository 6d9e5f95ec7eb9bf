"""Mentoring end to end: real aiogram over HTTP through the Telegram Bot API emulator.

People are registered directly in storage (registration has its own end-to-end tests); everything
they then do goes through Telegram: matching, approving, a decline and the next proposal,
accepting, logging a meeting, confirming it, and an idle-pair nudge sent by the outbox
dispatcher on a simulated clock, whose button opens the meeting log.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from dialogs.model import ExternalId
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.jobs_mentoring import run_nudges
from scheduler.senders import TelegramSender
from storage.models import Organisation, Role
from storage.models_mentoring import MentorMeeting, MentorPair
from storage.services import consent as consent_service
from storage.services import members as member_service
from storage.services import mentoring as svc
from tests.e2e.conftest import say, tap

pytestmark = pytest.mark.timeout(120)

SCHOOL = "МОБУ «СОШ № 2», Кудрово"


async def person(uow, chat, clock, *, role: str, name: str, subject: str | None = "philology"):
    """A registered member behind the chat's Telegram account (consent given)."""
    who = ExternalId("telegram", str(chat.user_id), str(chat.chat_id))
    municipality = await uow.reference.municipality_by_code("vsevolozhsky")
    await consent_service.give_consent(uow, who, municipality_id=municipality.id, now=clock.now)
    organisation_id = None
    if role != Role.COORDINATOR:
        organisation_id = (
            await uow.session.execute(select(Organisation.id).where(Organisation.name == SCHOOL))
        ).scalar_one()
    member = await member_service.register_member(
        uow, who, role=role, full_name=name, municipality_id=municipality.id, now=clock.now,
        organisation_id=organisation_id, position="subject_teacher" if organisation_id else None,
        subject_area=subject if organisation_id else None, teaching_start_year=2025 if role == Role.TEACHER else 2005,
        birth_year=2000 if role == Role.TEACHER else 1980,
    )
    if role == Role.MENTOR:
        member.mentor_confirmed = True
    return member


def first_label(buttons: list[str], prefix: str) -> str:
    return next(label for label in buttons if label.startswith(prefix))


async def test_matching_decline_accept_meeting_confirmation_and_nudge(tg, db, clock, emulator):
    coordinator, teacher, declining, accepting = tg.chat(), tg.chat(), tg.chat(), tg.chat()
    async with db.unit() as uow:
        await person(uow, coordinator, clock, role=Role.COORDINATOR, name="Кузнецова Елена Викторовна")
        mentee = await person(uow, teacher, clock, role=Role.TEACHER, name="Молодова Мария Петровна")
        for chat, name, subject in ((declining, "Опытнова Анна Ивановна", "philology"),
                                    (accepting, "Запасова Вера Ивановна", "math_it")):
            mentor = await person(uow, chat, clock, role=Role.MENTOR, name=name, subject=subject)
            await svc.save_mentor_profile(uow, mentor, category="highest", strengths=["methodical"],
                                          help_directions=[], capacity=1, accepts_network=False, share_link=True,
                                          contact_phone=None, now=clock.now)
        await svc.ask_for_mentor(uow, mentee, deficit_groups=["methodical"], share_link=True, contact_phone=None,
                                 now=clock.now)
        await uow.commit()

    # The coordinator runs matching and approves the best pair.
    await say(coordinator, "/menu")
    await tap(coordinator, "🧩 Подбор наставников")
    await tap(coordinator, "▶️ Подобрать пары")
    card = await tap(coordinator, first_label(await coordinator.buttons(), "✳"))
    assert "Наставник: Опытнова Анна Ивановна" in card
    assert "Почему: одна школа, один предмет, методические дефициты" in card
    await tap(coordinator, "✅ Одобрить")

    # The first mentor declines; the next best mentor is proposed and approved.
    await say(declining, "/menu")
    await tap(declining, "👥 Мои наставляемые")
    await tap(declining, "📨 Предложения")
    await tap(declining, "Молодова Мария Петровна, МОБУ «СОШ № 2», Кудрово")
    await tap(declining, "Отказаться")
    await say(coordinator, "/menu")
    await tap(coordinator, "🧩 Подбор наставников")
    await tap(coordinator, "Предложения")
    card = await tap(coordinator, first_label(await coordinator.buttons(), "✳"))
    assert "Наставник: Запасова Вера Ивановна" in card
    await tap(coordinator, "✅ Одобрить")

    # The second mentor accepts and logs a meeting in a few taps.
    await say(accepting, "/menu")
    await tap(accepting, "👥 Мои наставляемые")
    await tap(accepting, "📨 Предложения")
    await tap(accepting, "Молодова Мария Петровна, МОБУ «СОШ № 2», Кудрово")
    await tap(accepting, "✅ Принять")
    await say(accepting, "/menu")
    await tap(accepting, "🗓 Записать встречу")
    await tap(accepting, "Сегодня")
    await tap(accepting, "45 мин")
    await tap(accepting, "Очно, в ОУ")
    await tap(accepting, "Консультация")
    await tap(accepting, "☐ Методические")
    await tap(accepting, "Готово ✅")
    await tap(accepting, "Пропустить")
    logged = [m.content for m in await accepting.messages()]
    assert any(text.startswith("Встреча записана: 26.11.2026 · Консультация · 45 мин") for text in logged)

    # The mentee confirms it.
    await say(teacher, "/menu")
    home = await tap(teacher, "🤝 Наставник")
    assert "Ваш наставник: Запасова Вера Ивановна" in home
    await tap(teacher, "Подтвердить встречи")
    await tap(teacher, "26.11.2026 · Консультация · 45 мин · ⏳")
    await tap(teacher, "✅ Встреча была")
    async with db.unit() as uow:
        [pair] = (await uow.session.execute(select(MentorPair))).scalars().all()
        [meeting] = (await uow.session.execute(select(MentorMeeting))).scalars().all()
    assert meeting.confirmed == "yes" and pair.ended_at is None

    # Two quiet weeks later the nudge reaches the mentor; its button opens the meeting log.
    clock.advance(days=14)
    assert await run_nudges(db, clock.now) == 1
    bot = emulator.make_bot()
    broadcaster = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})
    try:
        await dispatch_due(db, broadcaster, clock.now)
    finally:
        await broadcaster.close()
        await bot.session.close()
    nudge = next(m for m in reversed(await accepting.messages()) if "встреч не было уже 14 дн." in m.content)
    assert nudge.content.startswith("Наставляемый Молодова Мария Петровна: встреч не было уже 14 дн.")
    await accepting.press_data(nudge.button("🗓 Записать встречу")["callback_data"], nudge.message_id)
    await accepting.wait_reply()
    shown = await accepting.wait_idle()
    assert shown[-1].content == "Когда была встреча?"

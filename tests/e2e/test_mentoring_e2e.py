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

from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.jobs_mentoring import run_nudges
from scheduler.senders import TelegramSender
from storage.models import Role
from storage.models_mentoring import MentorMeeting, MentorPair
from storage.services import mentoring as svc
from tests.support.people import school_member, telegram_who
from tests.support.scenarios import (
    answer_proposal,
    confirm_meeting,
    log_meeting_today,
    match_and_approve,
    telegram_actor,
)

pytestmark = pytest.mark.timeout(120)


async def test_matching_decline_accept_meeting_confirmation_and_nudge(tg, db, clock, emulator):
    coordinator, teacher, declining, accepting = tg.chat(), tg.chat(), tg.chat(), tg.chat()
    async with db.unit() as uow:
        await school_member(uow, telegram_who(coordinator), clock.now, role=Role.COORDINATOR,
                            name="Кузнецова Елена Викторовна")
        mentee = await school_member(uow, telegram_who(teacher), clock.now, role=Role.TEACHER,
                                     name="Молодова Мария Петровна")
        for chat, name, subject in ((declining, "Опытнова Анна Ивановна", "philology"),
                                    (accepting, "Запасова Вера Ивановна", "math_it")):
            mentor = await school_member(uow, telegram_who(chat), clock.now, role=Role.MENTOR, name=name,
                                         subject=subject)
            await svc.save_mentor_profile(uow, mentor, category="highest", strengths=["methodical"],
                                          help_directions=[], capacity=1, accepts_network=False, share_link=True,
                                          contact_phone=None, now=clock.now)
        await svc.ask_for_mentor(uow, mentee, deficit_groups=["methodical"], share_link=True, contact_phone=None,
                                 now=clock.now)
        await uow.commit()

    # The coordinator runs matching and approves the best pair.
    card = await match_and_approve(telegram_actor(coordinator))
    assert "Наставник: Опытнова Анна Ивановна" in card
    assert "Почему: одна школа, один предмет, методические дефициты" in card

    # The first mentor declines; the next best mentor is proposed and approved.
    await answer_proposal(telegram_actor(declining), "Отказаться")
    card = await match_and_approve(telegram_actor(coordinator), again=True)
    assert "Наставник: Запасова Вера Ивановна" in card

    # The second mentor accepts and logs a meeting in a few taps.
    await answer_proposal(telegram_actor(accepting), "✅ Принять")
    await log_meeting_today(telegram_actor(accepting))
    logged = [m.content for m in await accepting.messages()]
    assert any(text.startswith("Встреча записана: 26.11.2026 · Консультация · 45 мин") for text in logged)

    # The mentee confirms it.
    home = await confirm_meeting(telegram_actor(teacher))
    assert "Ваш наставник: Запасова Вера Ивановна" in home
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

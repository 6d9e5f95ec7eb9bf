"""Mentoring end to end through the fake VK server: the coordinator, the mentor and the mentee all in VK.

As in Telegram (tests/e2e/test_mentoring_e2e.py): matching and approving, the mentor accepting and
logging a meeting, the mentee confirming it, and the idle-pair nudge sent by the outbox
dispatcher through VK, whose button opens the meeting log.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from scheduler.dispatch import dispatch_due
from scheduler.jobs_mentoring import run_nudges
from storage.models import Role
from storage.models_mentoring import MentorMeeting, MentorPair
from storage.services import mentoring as svc
from tests.support.people import school_member, vk_who
from tests.support.scenarios import (
    answer_proposal,
    confirm_meeting,
    log_meeting_today,
    match_and_approve,
    vk_actor,
    vk_broadcaster,
)

pytestmark = pytest.mark.timeout(60)

COORDINATOR, MENTEE, MENTOR = 300_901, 300_902, 300_903


async def test_a_pair_is_matched_accepted_meets_confirms_and_is_nudged_all_in_vk(
    vk_person, fake, vk_client, db, clock
):
    coordinator, teacher, mentor_person = vk_person(COORDINATOR), vk_person(MENTEE), vk_person(MENTOR)
    async with db.unit() as uow:
        await school_member(uow, vk_who(COORDINATOR), clock.now, role=Role.COORDINATOR,
                            name="Кузнецова Елена Викторовна")
        mentee = await school_member(uow, vk_who(MENTEE), clock.now, role=Role.TEACHER,
                                     name="Молодова Мария Петровна")
        mentor = await school_member(uow, vk_who(MENTOR), clock.now, role=Role.MENTOR, name="Опытнова Анна Ивановна")
        await svc.save_mentor_profile(uow, mentor, category="highest", strengths=["methodical"], help_directions=[],
                                      capacity=1, accepts_network=False, share_link=True, contact_phone=None,
                                      now=clock.now)
        await svc.ask_for_mentor(uow, mentee, deficit_groups=["methodical"], share_link=True, contact_phone=None,
                                 now=clock.now)
        await uow.commit()

    card = await match_and_approve(vk_actor(coordinator))
    await answer_proposal(vk_actor(mentor_person), "✅ Принять")
    logged = await log_meeting_today(vk_actor(mentor_person))
    home = await confirm_meeting(vk_actor(teacher))

    assert "Наставник: Опытнова Анна Ивановна" in card
    assert "Почему: одна школа, один предмет, методические дефициты" in card
    assert any(text.startswith("Встреча записана: 26.11.2026 · Консультация · 45 мин")
               for text in mentor_person.texts() + [logged])
    assert "Ваш наставник: Опытнова Анна Ивановна" in home
    async with db.unit() as uow:
        [pair] = (await uow.session.execute(select(MentorPair))).scalars().all()
        [meeting] = (await uow.session.execute(select(MentorMeeting))).scalars().all()
    assert meeting.confirmed == "yes" and pair.ended_at is None and pair.mentor_id == mentor.id

    # Two quiet weeks later the nudge reaches the mentor in VK; its button opens the meeting log.
    clock.advance(days=14)
    assert await run_nudges(db, clock.now) == 1
    broadcaster = vk_broadcaster(vk_client)
    try:
        report = await dispatch_due(db, broadcaster, clock.now)
    finally:
        await broadcaster.close()
    nudge = next(m for m in reversed(fake.messages_to(MENTOR)) if "встреч не было уже 14 дн." in m["text"])
    assert report.unreachable == report.failed == 0
    assert nudge["text"].startswith("Наставляемый Молодова Мария Петровна: встреч не было уже 14 дн.")

    await mentor_person.tap("🗓 Записать встречу")

    assert mentor_person.text() == "Когда была встреча?"

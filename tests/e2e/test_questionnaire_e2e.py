"""The young-teacher questionnaire end to end: real aiogram over HTTP through the Telegram emulator.

A coordinator opens a campaign in the bot, the invitation goes out through the outbox, and the
teacher answers all 28 questions (with «Другое», ticks, going back, the bot restarting halfway and
an edit on the review screen); then every stored answer is checked. The same plan runs through
the fake VK server in tests/handlers/vk/test_vk_questionnaire_e2e.py.
"""

from __future__ import annotations

from scheduler.dispatch import dispatch_due
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.e2e.conftest import say, tap
from tests.support.people import telegram_who
from tests.support.questionnaire_plan import STORED, answer_everything, check_screens, stored_answers
from tests.support.questionnaire_plan import young_teacher_in_db
from tests.support.scenarios import open_young_teacher_campaign, register_coordinator, telegram_actor

QUIET = parse_quiet_hours("22:00-08:00")


async def test_a_teacher_invited_by_the_campaign_fills_the_whole_questionnaire_across_a_restart(
    tg, db, clock, broadcaster
):
    coordinator, teacher = tg.chat(), tg.chat()
    await young_teacher_in_db(db, telegram_who(teacher), clock.now)
    await say(teacher, "/start")
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await register_coordinator(telegram_actor(coordinator), code)
    card = await open_young_teacher_campaign(telegram_actor(coordinator))
    assert "Ответили: 0 из 1 (0%)" in card

    report = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    invitation = (await teacher.wait_for(2))[-1]
    assert report.sent == 1 and invitation.content.startswith("Приглашаем ответить на «Анкета для молодых педагогов»")
    intro = await tap(teacher, "Заполнить анкету")
    assert intro.startswith("Анкета для молодых педагогов")

    seen = await answer_everything(telegram_actor(teacher), tg.restart)

    check_screens(seen)
    status, stored = await stored_answers(db)
    assert status == "submitted"
    assert stored == STORED

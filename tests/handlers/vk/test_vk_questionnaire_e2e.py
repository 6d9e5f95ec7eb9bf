"""The young-teacher questionnaire end to end through the fake VK server, with the real engine and DB.

The same plan as the Telegram scenario (tests/e2e/test_questionnaire_e2e.py): a coordinator opens a
campaign in VK, the invitation goes out through the outbox dispatcher and VK's messages.send, and
the teacher answers all 28 questions (with «Другое», ticks, going back, the VK adapter restarting
halfway and an edit on the review screen); then every stored answer is checked.
"""

from __future__ import annotations

import pytest

from handlers.vk.adapter import VkAdapter
from scheduler.dispatch import dispatch_due
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.support.people import vk_who
from tests.support.questionnaire_plan import STORED, answer_everything, check_screens, stored_answers
from tests.support.questionnaire_plan import young_teacher_in_db
from tests.support.scenarios import open_young_teacher_campaign, register_coordinator, vk_actor, vk_broadcaster

pytestmark = pytest.mark.timeout(60)

COORDINATOR, TEACHER = 300_701, 300_702
QUIET = parse_quiet_hours("22:00-08:00")


async def test_a_teacher_invited_in_vk_fills_the_whole_questionnaire_across_an_adapter_restart(
    fake, vk_client, bot, vk_person, engine, db, clock
):
    coordinator, teacher = vk_person(COORDINATOR), vk_person(TEACHER)
    await young_teacher_in_db(db, vk_who(TEACHER), clock.now)
    await teacher.write("/start")
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await register_coordinator(vk_actor(coordinator), code)
    card = await open_young_teacher_campaign(vk_actor(coordinator))
    assert "Ответили: 0 из 1 (0%)" in card

    broadcaster = vk_broadcaster(vk_client)
    report = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    await broadcaster.close()
    invitation = fake.last_message_to(TEACHER)
    assert report.sent == 1 and invitation["text"].startswith("Приглашаем ответить на «Анкета для молодых педагогов»")
    await teacher.tap("Заполнить анкету")
    assert teacher.text().startswith("Анкета для молодых педагогов")
    restarted: list[VkAdapter] = []

    async def restart() -> None:
        await teacher.bot.stop()
        polls = len(fake.calls_to("groups.getLongPollServer"))
        adapter = VkAdapter(vk_client, engine, db, wait=0.2, send_backoff=0.01)
        restarted.append(adapter)
        await adapter.start()
        await fake.wait_calls("groups.getLongPollServer", polls + 1)  # polling from "now" on
        teacher.bot = adapter

    try:
        seen = await answer_everything(vk_actor(teacher), restart)
    finally:
        for adapter in restarted:
            await adapter.stop(timeout=5)

    check_screens(seen)
    status, stored = await stored_answers(db)
    assert status == "submitted"
    assert stored == STORED
    assert restarted and restarted[0].processed > 0  # the second half went through the new adapter

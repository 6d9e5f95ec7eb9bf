"""Roles are checked in the services, not only by hiding buttons; codes expire; order per person."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from dialogs.model import ExternalId, TextEvent
from storage.models import Member
from storage.services.errors import Forbidden
from storage.services.invites import check_invite, create_invite
from storage.services.members import decide_mentor, pending_mentors
from storage.services.errors import NotFound
from tests.support.driver import register_teacher


async def members_by_name(db) -> dict[str, Member]:
    async with db.unit() as uow:
        return {m.full_name: m for m in (await uow.session.execute(select(Member))).scalars()}


async def test_a_teacher_calling_a_coordinator_service_is_refused(chat, db, clock):
    await register_teacher(chat(1301))
    await register_teacher(chat(1302), name="Волков Игорь Сергеевич", role_label="Наставник")
    people = await members_by_name(db)

    async with db.unit() as uow:
        teacher = await uow.members.get(people["Иванова Мария Петровна"].id)
        with pytest.raises(Forbidden):
            await decide_mentor(uow, teacher, people["Волков Игорь Сергеевич"].id, approve=True, now=clock.now)
        with pytest.raises(Forbidden):
            await pending_mentors(uow, teacher)


async def test_a_coordinator_cannot_confirm_a_mentor_of_another_municipality(chat, db, clock):
    await register_teacher(chat(1303), name="Волков Игорь Сергеевич", role_label="Наставник")
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="novotroitsk", now=clock.now)
        await uow.commit()
    other = chat(1304)
    await other.send("/start")
    await other.press("Новотроицк")
    await other.press("Согласен(на)")
    await other.press("У меня есть код приглашения")
    await other.send(code)
    await other.send("Орлов Олег Олегович")
    await other.press("Всё верно")
    people = await members_by_name(db)

    async with db.unit() as uow:
        coordinator = await uow.members.get(people["Орлов Олег Олегович"].id)
        with pytest.raises(Forbidden):
            await decide_mentor(uow, coordinator, people["Волков Игорь Сергеевич"].id, approve=True, now=clock.now)


async def test_an_expired_invite_code_is_refused(db, clock):
    async with db.unit() as uow:
        code = await create_invite(uow, role="admin", now=clock.now, days=1)
        await uow.commit()

    async with db.unit() as uow:
        with pytest.raises(NotFound):
            await check_invite(uow, ExternalId("console", "1305", "1305"), code, now=clock.now + timedelta(days=2))


async def test_two_messages_from_one_person_at_once_are_handled_in_order(engine, chat):
    person = chat(1306)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")

    first, second = await asyncio.gather(
        engine.handle(person.who, TextEvent("Петров Пётр Петрович")),
        engine.handle(person.who, TextEvent("Школа")),
    )

    assert first.messages[-1].text == "Где вы работаете?"
    assert second.messages[-1].text.startswith("Выберите вашу организацию")

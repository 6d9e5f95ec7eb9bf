"""Coordinators by invite, mentor confirmation, profile edits, duplicate updates."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import AuditRecord, Invite, Member
from storage.services.invites import create_invite
from tests.support.driver import register_teacher


async def invite_code(db, clock, municipality="vsevolozhsky") -> str:
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code=municipality, now=clock.now)
        await uow.commit()
    return code


async def register_coordinator(person, code: str, name="Кузнецова Елена Викторовна") -> None:
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("У меня есть код приглашения")
    await person.send(code)
    await person.send(name)
    await person.press("Всё верно")


async def test_a_coordinator_registers_with_an_invite_code_that_then_cannot_be_reused(chat, db, clock):
    code = await invite_code(db, clock)

    await register_coordinator(chat(601), code)
    second = chat(602)
    await second.send("/start")
    await second.press("Всеволожский район")
    await second.press("Согласен(на)")
    await second.press("У меня есть код приглашения")
    reply = await second.send(code)

    assert "Код не подошёл" in reply.messages[0].text
    async with db.unit() as uow:
        coordinator = (await uow.session.execute(select(Member).where(Member.role == "coordinator"))).scalar_one()
        invite = (await uow.session.execute(select(Invite))).scalar_one()
    assert invite.used_by == coordinator.id


async def test_guessing_invite_codes_is_stopped_after_five_tries(chat):
    person = chat(603)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("У меня есть код приглашения")

    for attempt in range(5):
        await person.send(f"AAAA-BBBB-CCC{attempt}")
    reply = await person.send("AAAA-BBBB-CCCZ")

    assert reply.messages[0].text.startswith("Слишком много неверных попыток")


async def test_a_coordinator_confirms_a_mentor_and_the_mentor_sees_it(chat, db, clock):
    await register_coordinator(chat(604), await invite_code(db, clock))
    mentor = chat(605)
    await register_teacher(mentor, name="Волков Игорь Сергеевич", role_label="Наставник")
    coordinator = chat(604)

    await coordinator.send("/menu")
    await coordinator.press("✅ Подтвердить наставников")
    await coordinator.press("Волков Игорь Сергеевич, МОБУ «СОШ № 2», Кудрово")
    reply = await coordinator.press("Подтвердить")

    assert "роль наставника подтверждена" in reply.messages[0].text
    async with db.unit() as uow:
        stored = (await uow.session.execute(select(Member).where(Member.role == "mentor"))).scalar_one()
        audit = (await uow.session.execute(select(AuditRecord.action))).scalars().all()
    assert stored.mentor_confirmed is True
    assert "mentor.confirmed" in audit


async def test_a_teacher_cannot_open_the_coordinator_flow(chat):
    teacher = chat(606)
    await register_teacher(teacher)

    assert "✅ Подтвердить наставников" not in teacher.buttons()


async def test_a_coordinator_of_another_municipality_sees_no_foreign_mentors(chat, db, clock):
    code = await invite_code(db, clock, municipality="novotroitsk")
    other = chat(607)
    await other.send("/start")
    await other.press("Новотроицк")
    await other.press("Согласен(на)")
    await other.press("У меня есть код приглашения")
    await other.send(code)
    await other.send("Орлов Олег Олегович")
    await other.press("Всё верно")
    await register_teacher(chat(608), name="Волков Игорь Сергеевич", role_label="Наставник")

    await other.press("✅ Подтвердить наставников")

    assert other.last_text() == "Нет наставников, ждущих подтверждения."


async def test_profile_edit_changes_the_stored_name(chat, db):
    teacher = chat(609)
    await register_teacher(teacher)

    await teacher.send("/profile")
    await teacher.press("Изменить ФИО")
    await teacher.send("Петрова Мария Петровна")

    assert "ФИО: Петрова Мария Петровна" in teacher.last_text()
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Member.full_name))).scalar_one() == "Петрова Мария Петровна"


async def test_a_duplicate_update_is_processed_once(engine, db):
    from dialogs.model import CommandEvent, ExternalId

    who = ExternalId("telegram", "610", "610")
    async with db.unit() as uow:
        await uow.inbox.record("telegram", "77", "{}")
        await uow.commit()

    first = await engine.handle(who, CommandEvent("start"), update_id="77")
    second = await engine.handle(who, CommandEvent("start"), update_id="77")

    assert first.messages and not second.messages

"""Data rights: export, deletion with an audit record, retention, consent versions."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import func, select

from storage.models import Account, AuditRecord, Consent, Conversation, Member, Municipality
from storage.repositories.reference import forget_reference_cache
from storage.services.personal_data import erase_inactive
from tests.support.driver import register_teacher


async def count(db, model) -> int:
    async with db.unit() as uow:
        return (await uow.session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_mydata_sends_everything_stored_as_json_and_text(chat):
    teacher = chat(701)
    await register_teacher(teacher)

    reply = await teacher.send("/mydata")

    files = {file.name: file.content for file in reply.messages[-1].files}
    data = json.loads(files["my-data.json"])
    assert data["member"]["full_name"] == "Иванова Мария Петровна"
    assert data["accounts"][0]["external_id"] == "701"
    assert data["consents"][0]["version"] == "1.1"
    assert "Иванова Мария Петровна" in files["my-data.txt"].decode()


async def test_forget_deletes_personal_data_and_leaves_an_audit_record_without_it(chat, db):
    teacher = chat(702)
    await register_teacher(teacher)

    await teacher.send("/forget")
    reply = await teacher.press("Да, удалить всё")

    assert reply.messages[0].text.startswith("Готово: ваши данные удалены")
    assert await count(db, Member) == 0
    assert await count(db, Account) == 0
    assert await count(db, Consent) == 0
    async with db.unit() as uow:
        audit = (await uow.session.execute(select(AuditRecord).where(AuditRecord.action == "personal_data.erased"))).scalar_one()
        conversation = (await uow.session.execute(select(Conversation))).scalar_one()
    assert audit.actor == "self" and "Иванова" not in json.dumps(audit.details, ensure_ascii=False)
    assert conversation.flow == "public" and conversation.data == {}


async def test_forget_can_be_declined(chat, db):
    teacher = chat(703)
    await register_teacher(teacher)

    await teacher.send("/forget")
    await teacher.press("Нет, оставить")

    assert await count(db, Member) == 1


async def test_inactive_members_are_erased_after_the_retention_period(chat, db, clock):
    await register_teacher(chat(704))

    async with db.unit() as uow:
        kept = await erase_inactive(uow, now=clock.now + timedelta(days=30 * 35))
        erased = await erase_inactive(uow, now=clock.now + timedelta(days=30 * 37))
        await uow.commit()

    assert (kept, erased) == (0, 1)
    assert await count(db, Member) == 0


async def test_a_new_consent_text_version_asks_again(chat, db):
    teacher = chat(705)
    await register_teacher(teacher)
    async with db.unit() as uow:
        municipality = (await uow.session.execute(select(Municipality).where(Municipality.code == "vsevolozhsky"))).scalar_one()
        municipality.consent_revision = 2
        await uow.commit()
    forget_reference_cache()  # other processes see the change once their short cache expires

    await teacher.send("/menu")

    assert teacher.last_text().startswith("Согласие на обработку персональных данных")
    await teacher.press("Согласен(на)")
    assert teacher.last_text().startswith("Главное меню")


async def test_files_go_out_when_a_screen_is_entered_not_on_every_redraw(chat):
    teacher = chat(706)
    await register_teacher(teacher)

    entered = await teacher.send("/mydata")
    redrawn = await teacher.send("какой-то текст")

    assert entered.messages[-1].files and not redrawn.messages[-1].files

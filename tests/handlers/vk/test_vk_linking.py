"""One person in Telegram and VK: link codes between the channels, end to end and their rules."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from dialogs.flows import linking as texts
from storage.models import Account, AuditRecord, Member
from storage.models_linking import LinkAttempt, LinkCode
from storage.services import linking as linking_service
from storage.services.errors import NotFound
from storage.services.personal_data import erase_member
from tests.support.driver import register_teacher

VK_USER = 300_501
TG_USER = 700_501


async def code_from(chat) -> str:
    await chat.send("/menu")
    await chat.press("🔗 Связать Telegram и VK")
    await chat.press("Получить код")
    return re.search(r"\b(\d{6})\b", chat.texts()[0]).group(1)


async def consent_in_vk(person) -> None:
    await person.start()
    await person.tap("Всеволожский район")
    await person.tap("Согласен(на)")


async def linked(chat, vk_person, name: str = "Сидорова Ольга Ивановна"):
    """A teacher registered in Telegram who typed the link code in VK: (telegram, vk), with VK on the
    screen that asks where reminders go."""
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram, name=name)
    code = await code_from(telegram)
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)
    await vk.write(f"/link {code}")
    return telegram, vk


async def test_a_telegram_profile_is_linked_to_vk_with_a_code_and_reminders_go_where_chosen(
    chat, vk_person, db, fake
):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram, name="Сидорова Ольга Ивановна")
    code = await code_from(telegram)
    assert telegram.last_text().startswith("Откройте бот в ВКонтакте")
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)

    await vk.write("/link")
    assert vk.text().startswith("Введите код связки")
    await vk.write(code)
    assert vk.texts()[0] == "Готово: этот аккаунт связан с профилем «Сидорова Ольга Ивановна»."
    assert vk.text() == "Куда присылать напоминания и рассылки?"
    await vk.tap("ВКонтакте")

    assert vk.texts()[0] == "Напоминания и рассылки будут приходить в: ВКонтакте."
    assert vk.text().startswith("Главное меню")
    async with db.unit() as uow:
        members = (await uow.session.execute(select(Member))).scalars().all()
        accounts = (await uow.session.execute(select(Account).order_by(Account.id))).scalars().all()
        linked = select(AuditRecord).where(AuditRecord.action == "account.linked")
        audit = (await uow.session.execute(linked)).scalar_one()
    assert len(members) == 1 and members[0].preferred_transport == "vk"
    assert [(a.transport, a.member_id) for a in accounts] == [("telegram", members[0].id), ("vk", members[0].id)]
    assert audit.subject == f"member:{members[0].id}" and "Сидорова" not in str(audit.details)


async def test_the_linked_vk_account_sees_the_same_profile(chat, vk_person):
    telegram, vk = await linked(chat, vk_person)
    await vk.tap(texts.KEEP_AS_IS)

    await vk.write("/profile")

    assert "ФИО: Сидорова Ольга Ивановна" in vk.text()
    assert "Организация: МОБУ «СОШ № 2», Кудрово" in vk.text()


async def test_a_vk_profile_is_linked_to_telegram_the_other_way_round(chat, vk_person, db, fake):
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)
    await vk.tap("Наставник")
    await vk.write("Кузнецов Пётр Андреевич")
    await vk.tap("Школа")
    await vk.write("СОШ № 2")
    await vk.tap("МОБУ «СОШ № 2», Кудрово")
    await vk.tap("Учитель-предметник")
    await vk.tap("Математика и информатика")
    await vk.tap("2024")
    await vk.write("1990")
    await vk.tap("Всё верно")
    await vk.write("/menu")
    await vk.tap("🔗 Связать Telegram и VK")
    await vk.tap("Получить код")
    code = re.search(r"\b(\d{6})\b", vk.texts()[0]).group(1)
    telegram = chat(TG_USER, transport="telegram")
    await telegram.send("/start")
    await telegram.press("Всеволожский район")
    await telegram.press("Согласен(на)")

    await telegram.send("/link")
    await telegram.send(code)
    await telegram.press("Telegram")

    assert telegram.last_text().startswith("Главное меню")
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        transports = await linking_service.linked_transports(uow, member.id)
    assert member.full_name == "Кузнецов Пётр Андреевич" and member.preferred_transport == "telegram"
    assert transports == ["vk", "telegram"]


async def test_a_linked_member_switches_the_reminder_channel_from_the_menu(chat, vk_person, db):
    telegram, vk = await linked(chat, vk_person)
    await vk.tap(texts.KEEP_AS_IS)

    await telegram.send("/menu")
    await telegram.press("🔗 Связать Telegram и VK")
    assert "Ваш профиль подключён: Telegram, ВКонтакте." in telegram.last_text()
    await telegram.press("Куда присылать напоминания")
    await telegram.press("ВКонтакте")

    assert telegram.texts()[0] == "Напоминания и рассылки будут приходить в: ВКонтакте."
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Member.preferred_transport))).scalar_one() == "vk"


async def test_a_member_unlinks_the_other_channel_which_then_starts_afresh(chat, vk_person, db, clock):
    telegram, vk = await linked(chat, vk_person)
    await vk.tap("ВКонтакте")

    await telegram.send("/menu")
    await telegram.press("🔗 Связать Telegram и VK")
    await telegram.press(texts.UNLINK_BUTTON)
    assert "Telegram" not in telegram.buttons() and "ВКонтакте" in telegram.buttons()
    await telegram.press("ВКонтакте")
    assert telegram.last_text().startswith("Отвязать ВКонтакте от профиля «Сидорова Ольга Ивановна»?")
    await telegram.press("Да, отвязать")

    assert telegram.texts()[0] == "Готово: ВКонтакте отвязан от профиля. Напоминания и рассылки приходят в: Telegram."
    assert telegram.last_text().startswith("Ботом можно пользоваться и в Telegram, и во ВКонтакте")
    await vk.write("/profile")
    assert vk.text().startswith("Кто вы в программе?")  # a stranger now: registration, consent kept
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        accounts = (await uow.session.execute(select(Account).order_by(Account.id))).scalars().all()
        audit = (await uow.session.execute(
            select(AuditRecord).where(AuditRecord.action == "account.unlinked"))).scalar_one()
        with pytest.raises(linking_service.SameChannel):  # the channel in use cannot cut itself off
            await linking_service.unlink_channel(uow, telegram.who, "telegram", now=clock.now)
    assert [(a.transport, a.member_id) for a in accounts] == [("telegram", member.id), ("vk", None)]
    assert member.preferred_transport == "telegram"
    assert audit.details["transport"] == "vk" and "Сидорова" not in str(audit.details)


async def test_a_code_works_once(chat, vk_person):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram)
    code = await code_from(telegram)
    first, second = vk_person(VK_USER), vk_person(VK_USER + 1)
    await consent_in_vk(first)
    await first.write(f"/link {code}")
    await consent_in_vk(second)

    await second.write(f"/link {code}")

    assert second.texts()[0] == texts.BAD_CODE
    assert second.text().startswith("Введите код связки")


async def test_a_code_expires_after_15_minutes(chat, vk_person, clock):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram)
    code = await code_from(telegram)
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)
    clock.advance(minutes=15, seconds=1)

    await vk.write(f"/link {code}")

    assert vk.texts()[0] == texts.BAD_CODE


async def test_a_new_code_replaces_the_previous_one(chat, db):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram)
    await code_from(telegram)

    await telegram.press("Новый код")

    new = re.search(r"\b(\d{6})\b", telegram.texts()[0]).group(1)
    async with db.unit() as uow:
        codes = (await uow.session.execute(select(LinkCode))).scalars().all()
    assert [c.code_hash for c in codes] == [linking_service.hash_code(new)]


async def test_guessing_is_stopped_after_five_wrong_codes(chat, vk_person, db):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram)
    code = await code_from(telegram)
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)
    await vk.write("/link")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        await vk.write(wrong)
        assert vk.texts()[0] == texts.BAD_CODE

    await vk.write(code)

    assert vk.texts()[0] == texts.TOO_MANY
    async with db.unit() as uow:
        account = (await uow.session.execute(select(Account).where(Account.transport == "vk"))).scalar_one()
    assert account.member_id is None


async def test_text_that_is_not_six_digits_is_explained_and_not_counted(vk_person, db):
    vk = vk_person(VK_USER)
    await consent_in_vk(vk)
    await vk.write("/link")

    await vk.write("код 12")

    assert vk.texts()[0] == texts.BAD_FORMAT
    async with db.unit() as uow:
        count = (await uow.session.execute(select(func.count(LinkAttempt.id)))).scalar_one()
    assert count == 0


async def test_an_account_registered_on_its_own_is_not_merged_by_a_code(chat, db, clock):
    first, second = chat(TG_USER, transport="telegram"), chat(VK_USER, transport="vk")
    await register_teacher(first, name="Иванова Мария Петровна")
    await register_teacher(second, name="Петрова Анна Сергеевна")
    code = await code_from(first)

    async with db.unit() as uow:
        with pytest.raises(linking_service.SeparateProfile):
            await linking_service.redeem_link_code(uow, second.who, code, now=clock.now)

    await second.send(f"/link {code}")  # a member's /link leads to their own linking screen
    assert second.last_text().startswith("Ботом можно пользоваться и в Telegram")


async def test_a_code_typed_in_the_same_channel_by_another_account_is_refused(chat):
    owner, stranger = chat(TG_USER, transport="telegram"), chat(TG_USER + 1, transport="telegram")
    await register_teacher(owner)
    code = await code_from(owner)
    await stranger.send("/start")
    await stranger.press("Всеволожский район")
    await stranger.press("Согласен(на)")

    await stranger.send(f"/link {code}")

    assert stranger.texts()[0] == texts.SAME_CHANNEL.format(channel="Telegram")


async def test_without_consent_link_first_asks_for_it(vk_person, db):
    vk = vk_person(VK_USER)

    await vk.write("/link 123456")

    assert vk.text().startswith("Здравствуйте!")
    async with db.unit() as uow:
        assert (await uow.session.execute(select(func.count(Account.id)))).scalar_one() == 0


def test_the_registration_button_for_a_link_code_leads_to_the_code_screen():
    assert texts.LINK_CODE_BUTTON.label == "У меня есть код связки"
    assert texts.LINK_CODE_BUTTON.go == "flow:link_redeem"


async def test_erasing_a_member_erases_their_link_codes_and_wrong_tries(chat, db, clock):
    telegram = chat(TG_USER, transport="telegram")
    await register_teacher(telegram)
    await code_from(telegram)
    async with db.unit() as uow:
        with pytest.raises(NotFound):
            await linking_service.redeem_link_code(uow, telegram.who, "000000", now=clock.now)
        await uow.commit()
    async with db.unit() as uow:
        member_id = (await uow.session.execute(select(Member.id))).scalar_one()

        await erase_member(uow, member_id, now=clock.now, reason="self")
        await uow.commit()

    async with db.unit() as uow:
        assert (await uow.session.execute(select(func.count(LinkCode.id)))).scalar_one() == 0
        assert (await uow.session.execute(select(func.count(LinkAttempt.id)))).scalar_one() == 0

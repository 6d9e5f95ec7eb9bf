"""Registration end to end: real aiogram, over HTTP, through the Telegram Bot API emulator."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Account, Consent, Member
from tests.e2e.conftest import say, tap


async def register_until_org(chat) -> None:
    await say(chat, "/start")
    await tap(chat, "Всеволожский район")
    await tap(chat, "Согласен(на)")
    await tap(chat, "Молодой (начинающий) педагог")
    await say(chat, "Смирнова Анна Олеговна")
    await tap(chat, "Школа")


async def test_a_new_user_registers_and_the_database_holds_exactly_what_was_entered(tg, db):
    chat = tg.chat()

    await register_until_org(chat)
    await say(chat, "Кудрово")
    await tap(chat, "МОБУ «СОШ № 2», Кудрово")
    await tap(chat, "Учитель-предметник")
    await tap(chat, "Математика и информатика")
    await tap(chat, "2026")
    review = await say(chat, "2001")
    final = await tap(chat, "Всё верно")

    assert "ФИО: Смирнова Анна Олеговна" in review
    assert final.startswith("Главное меню. Вы — молодой педагог.")
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        account = (await uow.session.execute(select(Account))).scalar_one()
        consent = (await uow.session.execute(select(Consent))).scalar_one()
    assert (member.full_name, member.position, member.subject_area) == (
        "Смирнова Анна Олеговна", "subject_teacher", "math_it")
    assert (member.teaching_start_year, member.birth_year, member.role) == (2026, 2001, "teacher")
    assert (account.transport, account.external_id, account.member_id) == ("telegram", str(chat.user_id), member.id)
    assert consent.account_id == account.id


async def test_a_restart_in_the_middle_of_registration_resumes_where_it_was(tg):
    chat = tg.chat()
    await register_until_org(chat)

    await tg.restart()
    shown = await say(chat, "Кудрово")

    assert shown.startswith("Выберите вашу организацию")
    assert "МОБУ «СОШ № 2», Кудрово" in await chat.buttons()


async def test_a_stale_button_gets_a_clear_answer_and_changes_nothing(tg):
    chat = tg.chat()
    await say(chat, "/start")
    await tap(chat, "Всеволожский район")
    consent_message = await chat.last_message()
    await tap(chat, "Согласен(на)")

    decline_token = consent_message.button("Не согласен(на)")["callback_data"]
    await chat.press_data(decline_token, consent_message.message_id)
    await chat.wait_reply()
    messages = await chat.wait_idle()

    assert messages[-2].content.startswith("Эта кнопка уже неактуальна")
    assert messages[-1].content == "Кто вы в программе?"


async def test_text_where_a_button_is_expected_gets_a_hint(tg):
    chat = tg.chat()
    await say(chat, "/start")
    await tap(chat, "Всеволожский район")
    await tap(chat, "Согласен(на)")

    await chat.send("хочу зарегистрироваться")
    await chat.wait_reply()
    messages = await chat.wait_idle()

    assert messages[-2].content.startswith("Пожалуйста, выберите вариант кнопкой")
    assert messages[-1].content == "Кто вы в программе?"


async def test_a_photo_instead_of_text_gets_a_clear_answer(tg):
    chat = tg.chat()
    await say(chat, "/start")

    await chat.send_photo()
    await chat.wait_reply()
    messages = await chat.wait_idle()

    assert messages[-2].content.startswith("Я понимаю только текст и кнопки")


async def test_a_reply_that_hits_429_is_sent_after_retry_after(tg, emulator):
    import time

    chat = tg.chat()
    await emulator.inject_failure("sendMessage", 429, chat_id=chat.chat_id, retry_after=1, times=1)
    started = time.monotonic()

    await chat.send("/start")
    reply = await chat.wait_reply(timeout=10)

    assert reply.content.startswith("Здравствуйте!")
    assert time.monotonic() - started >= 1.0

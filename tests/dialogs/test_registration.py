"""Registration through the engine on real storage (SQLite, and PostgreSQL with --postgres)."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import Account, Consent, Conversation, Member, Organisation
from tests.support.driver import register_teacher


async def test_new_teacher_registers_and_database_holds_exactly_what_was_entered(chat, db):
    person = chat(501)

    await register_teacher(person)

    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        organisation = await uow.session.get(Organisation, member.organisation_id)
        consent = (await uow.session.execute(select(Consent))).scalar_one()
    assert (member.full_name, member.role, member.position, member.subject_area) == (
        "Иванова Мария Петровна", "teacher", "subject_teacher", "philology")
    assert (member.teaching_start_year, member.birth_year) == (2025, 1999)
    assert organisation.name == "МОБУ «СОШ № 2», Кудрово"
    assert consent.version == "1.1" and consent.withdrawn_at is None


async def test_nothing_but_the_chat_is_stored_before_consent(chat, db):
    person = chat(502)

    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Не согласен(на)")

    async with db.unit() as uow:
        assert (await uow.session.execute(select(func.count(Account.id)))).scalar_one() == 0
        assert (await uow.session.execute(select(func.count(Member.id)))).scalar_one() == 0
        conversation = (await uow.session.execute(select(Conversation))).scalar_one()
    assert set(conversation.data) <= {"_muni"}
    assert person.buttons() == ["Общая информация", "Дать согласие"]


async def test_text_where_a_button_is_expected_gets_a_hint_and_changes_nothing(chat):
    person = chat(503)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")

    reply = await person.send("я учитель")

    assert reply.messages[0].text.startswith("Пожалуйста, выберите вариант кнопкой")
    assert person.last_text() == "Кто вы в программе?"


async def test_a_stale_button_is_refused_and_the_current_screen_shown(chat):
    person = chat(504)
    await person.send("/start")
    await person.press("Всеволожский район")
    old_token = person.token_of("Не согласен(на)")
    await person.press("Согласен(на)")

    reply = await person.press_token(old_token)

    assert reply.messages[0].text.startswith("Эта кнопка уже неактуальна")
    assert person.last_text() == "Кто вы в программе?"


async def test_a_forged_token_changes_nothing(chat):
    person = chat(505)
    await person.send("/start")

    reply = await person.press_token("zzzzzz.0")

    assert "неактуальна" in reply.messages[0].text


async def test_photo_instead_of_text_gets_a_clear_answer(chat):
    person = chat(506)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")

    reply = await person.send_other("photo")

    assert reply.messages[0].text.startswith("Я понимаю только текст")
    assert person.last_text().startswith("Как вас зовут")


async def test_an_overlong_or_malformed_name_is_refused(chat):
    person = chat(507)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")

    too_long = await person.send("А" * 500)
    malformed = await person.send("<b>Иван</b> 123")

    assert too_long.messages[0].text.startswith("Слишком длинный ответ")
    assert malformed.messages[0].text.startswith("Напишите фамилию, имя и отчество")
    assert person.last_text().startswith("Как вас зовут")


async def test_a_command_in_the_middle_of_registration_does_not_lose_answers(chat):
    person = chat(508)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")
    await person.send("Петров Пётр Петрович")

    reply = await person.send("/profile")

    assert "Закончите или нажмите «Отмена»" in reply.messages[0].text
    assert person.last_text() == "Где вы работаете?"


async def test_back_returns_to_the_previous_step_with_the_answer_kept(chat):
    person = chat(509)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")
    await person.send("Петров Пётр Петрович")

    await person.press("« Назад")
    await person.send("Сидоров Сидор Сидорович")
    await person.press("Школа")

    assert person.last_text().startswith("Выберите вашу организацию")


async def test_searching_organisations_by_part_of_the_name(chat):
    person = chat(510)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")
    await person.send("Петров Пётр Петрович")
    await person.press("Школа")

    await person.send("кудрово")

    assert [b for b in person.buttons() if "Кудрово" in b] == person.buttons()[:-2]
    assert len(person.buttons()) == 4


async def test_registration_survives_an_engine_restart(chat, db, clock):
    from dialogs.engine import DialogEngine
    from dialogs.registry import build_registry
    from tests.support.driver import EngineChat

    person = chat(511)
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Согласен(на)")
    await person.press("Наставник")
    await person.send("Петров Пётр Петрович")

    restarted = EngineChat(DialogEngine(db, build_registry(), clock=clock), 511)
    restarted.history = person.history
    await restarted.press("Школа")

    assert restarted.last_text().startswith("Выберите вашу организацию")

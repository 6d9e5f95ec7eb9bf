"""Registration and basic dialog behaviour through the fake VK server, with the real engine and DB."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import Account, Consent, Member, Organisation

USER = 300_001


async def test_a_teacher_registers_through_vk_and_the_database_holds_what_was_entered(vk_person, fake, db):
    person = vk_person(USER)

    await person.start()
    assert person.text().startswith("Здравствуйте!")
    await person.tap("Всеволожский район")
    assert person.text().startswith("Согласие на обработку персональных данных")
    await person.tap("Согласен(на)")
    assert person.texts()[0] == "Спасибо! Согласие сохранено."
    assert person.text() == "Кто вы в программе?"
    await person.tap("Молодой (начинающий) педагог")
    assert person.text().startswith("Как вас зовут?")
    await person.write("Петрова Анна Сергеевна")
    assert person.text() == "Где вы работаете?"
    await person.tap("Школа")
    await person.write("СОШ № 2")
    await person.tap("МОБУ «СОШ № 2», Кудрово")
    assert person.text().startswith("Ваша должность?")
    await person.tap("Учитель-предметник")
    await person.tap("Филология")
    assert person.text().startswith("В каком году вы начали работать")
    await person.tap("2025")
    await person.write("1999")
    assert person.text().startswith("Проверьте, всё ли верно:")
    assert "ФИО: Петрова Анна Сергеевна" in person.text()
    await person.tap("Всё верно")

    assert person.texts()[0].startswith("Готово, вы зарегистрированы")
    assert person.text().startswith("Главное меню")
    assert "👤 Мой профиль" in person.buttons()
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        account = (await uow.session.execute(select(Account))).scalar_one()
        organisation = await uow.session.get(Organisation, member.organisation_id)
        consents = (await uow.session.execute(select(func.count(Consent.id)))).scalar_one()
    assert (account.transport, account.external_id, account.chat_id) == ("vk", str(USER), str(USER))
    assert account.member_id == member.id and consents == 1
    assert (member.full_name, member.role, member.position, member.subject_area) == (
        "Петрова Анна Сергеевна", "teacher", "subject_teacher", "philology")
    assert (member.teaching_start_year, member.birth_year, member.preferred_transport) == (2025, 1999, "vk")
    assert organisation.name == "МОБУ «СОШ № 2», Кудрово"


async def test_every_button_press_is_answered_so_the_spinner_stops(vk_person, fake):
    person = vk_person(USER)
    await person.start()

    await person.tap("Всеволожский район")
    await person.tap("Согласен(на)")

    answers = await fake.wait_event_answers(2)
    assert [a["user_id"] for a in answers] == [USER, USER]
    assert all(a["event_data"] is None for a in answers)


async def test_a_stale_button_is_refused_with_a_snackbar_and_the_current_screen_shown(vk_person, fake):
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    consent_screen = fake.last_message_to(USER)
    await person.tap("Согласен(на)")

    await person._act(lambda: fake.user_taps(USER, "Не согласен(на)", consent_screen))

    assert person.texts()[0].startswith("Эта кнопка уже неактуальна")
    assert person.text() == "Кто вы в программе?"
    answer = fake.event_answers[-1]
    assert answer["event_data"] == {"type": "show_snackbar", "text": "Кнопка устарела"}


async def test_text_where_a_button_is_expected_gets_a_hint_and_changes_nothing(vk_person, db):
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    await person.tap("Согласен(на)")

    await person.write("я учитель")

    assert person.texts()[0].startswith("Пожалуйста, выберите вариант кнопкой")
    assert person.text() == "Кто вы в программе?"
    async with db.unit() as uow:
        assert (await uow.session.execute(select(func.count(Member.id)))).scalar_one() == 0


async def test_a_photo_without_text_gets_a_clear_answer(vk_person):
    person = vk_person(USER)
    await person.start()

    await person.write("", attachments=[{"type": "photo", "photo": {"id": 1, "owner_id": USER}}])

    assert person.texts()[0].startswith("Я понимаю только текст и кнопки")


async def test_a_slash_command_typed_in_vk_works_as_in_telegram(vk_person):
    person = vk_person(USER)
    await person.start()

    await person.write("/help")

    assert person.texts()[0].startswith("Что умеет бот")


async def test_a_client_without_callback_buttons_gets_text_buttons_that_still_work(vk_person, fake):
    person = vk_person(USER)
    old_client = {"button_actions": ["text"], "keyboard": True, "inline_keyboard": True, "carousel": False,
                  "lang_id": 0}
    await person.write("Начать", payload={"command": "start"}, client_info=old_client)
    assert {b["type"] for b in fake.buttons_of(fake.last_message_to(USER))} == {"text"}

    await person.tap("Всеволожский район")

    assert person.text().startswith("Согласие на обработку персональных данных")
    assert fake.event_answers == []


async def test_messages_from_group_chats_are_ignored(vk_person, fake, bot):
    chat_peer = 2_000_000_001
    person = vk_person(USER)

    await fake.user_writes(USER, "/start", peer_id=chat_peer)
    await person.start()  # handled after the chat message, which produced nothing

    assert fake.messages_to(chat_peer) == []
    assert bot.processed == 1

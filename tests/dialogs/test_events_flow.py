"""The events flows through the engine on real storage: a coordinator creates, teachers register, feedback."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from dialogs.engine import Command, DialogEngine, check_flow
from dialogs.flows import events as flows
from dialogs.registry import build_registry
from storage.models import Member
from storage.models_events import Event, EventFeedback, Registration
from storage.models_outbox import OutboxMessage
from storage.services import events as ev
from tests.support.driver import EngineChat, register_coordinator, register_teacher

MSK = ZoneInfo("Europe/Moscow")


def button_with(person: EngineChat, part: str) -> str:
    for label in person.buttons():
        if part in label:
            return label
    raise AssertionError(f"no button with {part!r}: {person.buttons()}")


async def create_event(coordinator: EngineChat, *, title: str = "Школа молодого педагога: сессия 1",
                       capacity: str | None = "1", kind: str = "Школа молодого педагога") -> None:
    await coordinator.send("/events")
    await coordinator.press("➕ Новое мероприятие")
    await coordinator.press(kind)
    await coordinator.send(title)
    await coordinator.send("10.12.2026 15:00")
    await coordinator.send("17:00")
    await coordinator.send("ВРМЦ, ауд. 12")
    await coordinator.press("Молодые педагоги")
    if capacity is None:
        await coordinator.press("Без ограничений")
    else:
        await coordinator.send(capacity)
    await coordinator.press("☐ Методические")
    await coordinator.press("Готово ✅")
    await coordinator.send("metod@example.org")
    await coordinator.press("Опубликовать")


async def open_first_event(person: EngineChat) -> None:
    await person.send("/events")
    await person.press(button_with(person, "10.12 15:00"))


async def test_a_coordinator_creates_an_event_step_by_step_in_local_time(chat, db, clock):
    coordinator = chat(801)
    await register_coordinator(coordinator, db, clock)

    await create_event(coordinator)

    assert coordinator.history[-2].text.startswith("Мероприятие опубликовано")
    card = coordinator.last_text()
    assert card.startswith("«Школа молодого педагога: сессия 1»")
    assert "Когда: 10 декабря 2026, 15:00–17:00" in card and "Свободных мест: 1 из 1" in card
    assert "Темы (дефициты): методические" in card
    assert {"✅ Иду", "✏️ Изменить", "🚫 Отменить мероприятие"} <= set(coordinator.buttons())
    async with db.unit() as uow:
        event = (await uow.session.execute(select(Event))).scalar_one()
    assert event.starts_at == datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)
    assert (event.audience, event.capacity, event.deficit_tags, event.organiser_contact) == (
        "young_teachers", 1, ["methodical"], "metod@example.org")


async def test_a_teacher_does_not_see_coordinator_buttons_and_cannot_create(chat, db, clock):
    teacher = chat(802)
    await register_teacher(teacher)

    await teacher.send("/events")

    assert teacher.last_text().startswith("Пока нет запланированных мероприятий")
    assert "➕ Новое мероприятие" not in teacher.buttons()
    assert "⭐ Для вас" in teacher.buttons()


async def test_a_teacher_registers_with_iду_and_is_told_about_the_reminders(chat, db, clock):
    coordinator, teacher = chat(803), chat(804)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator, capacity="5")
    await register_teacher(teacher)

    await open_first_event(teacher)
    await teacher.press("✅ Иду")

    assert teacher.history[-2].text == (
        "Вы записаны на «Школа молодого педагога: сессия 1». Напомню за неделю, за день и за 2 часа до начала.")
    assert "✅ Вы записаны." in teacher.last_text() and "❌ Не пойду" in teacher.buttons()
    async with db.unit() as uow:
        reminders = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "event.reminder"))).scalars().all()
    assert len(reminders) == 3
    await teacher.send("/events")
    assert button_with(teacher, "10.12 15:00").startswith("✅ ")


async def test_when_full_a_teacher_joins_the_waiting_list_and_gets_the_place_when_it_frees(chat, db, clock):
    coordinator, first, second = chat(805), chat(806), chat(807)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator, capacity="1")
    await register_teacher(first, name="Орлова Дарья Сергеевна")
    await register_teacher(second, name="Белова Ирина Олеговна")
    await open_first_event(first)
    await first.press("✅ Иду")

    await open_first_event(second)
    assert "✅ Иду" not in second.buttons()
    await second.press("⏳ В лист ожидания")
    waiting_text = second.history[-2].text
    await open_first_event(first)
    await first.press("❌ Не пойду")

    assert waiting_text.startswith("Свободных мест нет — вы в листе ожидания (№ 1)")
    assert first.history[-2].text == "Запись отменена."
    async with db.unit() as uow:
        states = dict((await uow.session.execute(
            select(Member.full_name, Registration.state).join(Registration, Registration.member_id == Member.id))).all())
        notice = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "event.promoted"))).scalar_one()
    assert states == {"Орлова Дарья Сергеевна": "withdrawn", "Белова Ирина Олеговна": "going"}
    assert notice.text.startswith("Освободилось место: вы записаны на «Школа молодого педагога: сессия 1»")


async def test_add_to_calendar_sends_an_ics_file(chat, db, clock):
    coordinator = chat(808)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator)

    reply = await coordinator.press("📆 Добавить в календарь")

    files = reply.messages[-1].files
    assert [file.name for file in files] == [files[0].name] and files[0].name.endswith(".ics")
    entry = next(iter(Calendar.from_ical(files[0].content).walk("VEVENT")))
    assert entry["dtstart"].dt == datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)


async def test_a_coordinator_moves_the_event_and_everyone_registered_is_notified(chat, db, clock):
    coordinator, teacher = chat(809), chat(810)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator, capacity=None)
    await register_teacher(teacher)
    await open_first_event(teacher)
    await teacher.press("✅ Иду")

    await open_first_event(coordinator)
    await coordinator.press("✏️ Изменить")
    await coordinator.press("Дата и время начала")
    await coordinator.send("11.12.2026 16:00")

    assert "Когда: 11 декабря 2026, 16:00–18:00" in coordinator.last_text()
    async with db.unit() as uow:
        notice = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "event.changed"))).scalar_one()
    assert "Теперь: 11 декабря 2026, 16:00–18:00" in notice.text


async def test_a_coordinator_cancels_and_registered_teachers_get_a_notice(chat, db, clock):
    coordinator, teacher = chat(811), chat(812)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator)
    await register_teacher(teacher)
    await open_first_event(teacher)
    await teacher.press("✅ Иду")

    await open_first_event(coordinator)
    await coordinator.press("🚫 Отменить мероприятие")
    await coordinator.press("Да, отменить")

    async with db.unit() as uow:
        kinds = sorted((await uow.session.execute(select(OutboxMessage.kind, OutboxMessage.state))).all())
    assert kinds == [("event.cancelled", "pending")] + [("event.reminder", "cancelled")] * 3
    await teacher.send("/events")
    assert teacher.last_text().startswith("Пока нет запланированных мероприятий")


async def test_a_coordinator_copies_an_event_to_a_new_date(chat, db, clock):
    coordinator = chat(813)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator)
    await open_first_event(coordinator)

    await coordinator.press("📄 Копировать")
    await coordinator.send("04.02.2027 15:00")

    assert "Когда: 4 февраля 2027, 15:00–17:00" in coordinator.last_text()
    async with db.unit() as uow:
        assert len((await uow.session.execute(select(Event))).scalars().all()) == 2


async def went_to_an_event(coordinator: EngineChat, teacher: EngineChat, db, clock, **event) -> EngineChat:
    """A coordinator publishes an event, the teacher says «Иду»; then the clock is past its end and
    the post-event questions are queued. Returns the teacher."""
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator, **event)
    await register_teacher(teacher)
    await open_first_event(teacher)
    await teacher.press("✅ Иду")
    clock.now = datetime(2026, 12, 10, 18, 0, tzinfo=MSK).astimezone(timezone.utc)
    async with db.unit() as uow:
        await ev.queue_followups(uow, now=clock.now)
        await uow.commit()
    return teacher


async def test_after_the_event_the_teacher_says_they_came_and_answers_the_feedback(chat, db, clock):
    teacher = await went_to_an_event(chat(814), chat(815), db, clock)

    async def reported(_uow, _member):
        return {"methodical"}

    ev.use_deficit_source(reported)
    try:
        await teacher.send("/events")
        await teacher.press("📝 Отзыв о прошедшем")
        asked = teacher.last_text()
        await teacher.press("Да, был(а)")
        await teacher.press("Да, вполне или скорее да")
        await teacher.press("Затрудняюсь ответить")
        await teacher.press("Да, вполне или скорее да")
        await teacher.press("Да или скорее да")
        await teacher.send("Больше практики, пожалуйста")
        deficit_question = teacher.last_text()
        await teacher.press("Стало легче")
    finally:
        ev.use_deficit_source(None)

    assert asked == "Вы были на мероприятии «Школа молодого педагога: сессия 1» (10 декабря 2026, 15:00–17:00)?"
    assert deficit_question.startswith("Мероприятие касалось затруднений, о которых вы сообщали: методические.")
    assert "Спасибо за ответы!" in [message.text for message in teacher.last.messages]
    async with db.unit() as uow:
        feedback = (await uow.session.execute(select(EventFeedback))).scalar_one()
        registration = (await uow.session.execute(select(Registration))).scalar_one()
    assert feedback.answers == {"content": "positive", "organisation": "unsure", "usefulness": "positive",
                                "recommend": "positive"}
    assert (feedback.comment, feedback.deficit_groups, feedback.deficit_still_strong) == (
        "Больше практики, пожалуйста", ["methodical"], "weaker")
    assert registration.attended is True


async def test_after_a_further_training_course_the_listener_answers_appendix_1_verbatim(chat, db, clock):
    teacher = await went_to_an_event(chat(830), chat(831), db, clock, title="ДПП «Формирующее оценивание»",
                                     kind="Курсы повышения квалификации (ДПП)")

    await teacher.send("/events")
    await teacher.press("📝 Отзыв о прошедшем")
    await teacher.press("Да, был(а)")
    asked = []
    for answer in ["Да, вполне или скорее да", "Затрудняюсь ответить", "Скорее нет или однозначно нет",
                   "Да, вполне или скорее да", "Положительно или скорее положительно", "Да или скорее да"]:
        asked.append(teacher.last_text())
        await teacher.press(answer)
    asked.append(teacher.last_text())
    await teacher.send("Больше практических занятий")

    assert asked[0] == (
        "Анкета слушателя по итогам обучения по дополнительной профессиональной программе ДПП «Формирующее "
        "оценивание»\n\nУважаемый слушатель! ВРМЦ Всеволожского района стремится постоянно улучшать качество "
        "Вашего обучения. Ваши замечания являются для нас очень ценными, поэтому просим Вас заполнить анкету, "
        "отметив позиции, в наибольшей степени отвечающие Вашему мнению. В каждом вопросе выберите только один "
        "вариант ответа.\n\n1. Удовлетворены ли вы компетентностью преподавателя?")
    assert asked[1:] == [
        "2. Удовлетворены ли вы содержанием программы?",
        "3. Удовлетворены ли вы материально-техническим обеспечением организации?",
        "4. Удовлетворены ли вы качеством предоставляемой образовательной услуги?",
        "5. Как бы вы в целом оценили доброжелательность и вежливость работников организации?",
        "6. Готовы ли вы рекомендовать данную программу коллегам?",
        "7. Если у Вас есть предложения, просим Вас их записать:",
    ]
    assert "Благодарим за сотрудничество!" in [message.text for message in teacher.last.messages]
    async with db.unit() as uow:
        feedback = (await uow.session.execute(select(EventFeedback))).scalar_one()
    assert feedback.answers == {"competence": "positive", "content": "unsure", "facilities": "negative",
                                "service_quality": "positive", "courtesy": "positive", "recommend": "positive"}
    assert feedback.comment == "Больше практических занятий"


async def test_a_teacher_who_did_not_come_is_not_asked_the_questions(chat, db, clock):
    coordinator, teacher = chat(816), chat(817)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator)
    await register_teacher(teacher)
    await open_first_event(teacher)
    await teacher.press("✅ Иду")
    clock.now = datetime(2026, 12, 10, 18, 0, tzinfo=MSK).astimezone(timezone.utc)

    await teacher.send("/events")
    await teacher.press("📝 Отзыв о прошедшем")
    await teacher.press("Нет, не получилось")

    assert [m.text for m in teacher.last.messages][:2] == [
        "Понятно, спасибо! Надеюсь, получится в следующий раз.",
        "Сейчас нет мероприятий, по которым я жду ответа. Спасибо!"]
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Registration.attended))).scalar_one() is False
        assert (await uow.session.execute(select(EventFeedback))).scalars().all() == []


async def test_a_teacher_who_stops_halfway_is_asked_again_from_the_message_button(chat, db, clock):
    coordinator, teacher = chat(822), chat(823)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator)
    await register_teacher(teacher)
    await open_first_event(teacher)
    await teacher.press("✅ Иду")
    clock.now = datetime(2026, 12, 10, 18, 0, tzinfo=MSK).astimezone(timezone.utc)
    await teacher.send("/events")
    await teacher.press("📝 Отзыв о прошедшем")
    await teacher.press("Да, был(а)")
    await teacher.send("/menu")

    await teacher.send("/__go__ event_feedback")  # what the adapters do for the «Ответить» button (go:event_feedback)

    assert teacher.last_text().startswith("Вы были на мероприятии «Школа молодого педагога: сессия 1»")


async def test_for_you_shows_first_the_events_for_the_reported_deficits(chat, db, clock):
    coordinator, teacher = chat(818), chat(819)
    await register_coordinator(coordinator, db, clock)
    await create_event(coordinator, title="Первое: методическое")
    await register_teacher(teacher)
    async with db.unit() as uow:
        actor = (await uow.session.execute(select(Member).where(Member.role == "coordinator"))).scalar_one()
        start = datetime(2026, 12, 20, 15, 0, tzinfo=MSK).astimezone(timezone.utc)
        await ev.create_event(uow, actor, municipality_id=actor.municipality_id, type_code="seminar",
                              title="Позже: ИКТ", starts_at=start, ends_at=start + timedelta(hours=2), now=clock.now,
                              place="ВРМЦ", deficit_tags=["ict"])
        await uow.commit()

    async def reported(_uow, _member):
        return {"ict"}

    ev.use_deficit_source(reported)
    try:
        await teacher.send("/events")
        await teacher.press("⭐ Для вас")
        labels = teacher.buttons()
    finally:
        ev.use_deficit_source(None)

    assert labels[0].startswith("⭐ 20.12 15:00 Позже: ИКТ") and labels[1].startswith("10.12 15:00 Первое")


async def test_subscriptions_are_saved_from_the_ticks(chat, db, clock):
    teacher = chat(820)
    await register_teacher(teacher)
    await teacher.send("/events")
    await teacher.press("🔔 Подписки")

    await teacher.press("☐ Клуб молодых педагогов")
    await teacher.press("Готово ✅")

    assert teacher.history[-2].text == "Подписки сохранены: 1."
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        assert await ev.subscriptions(uow, member.id) == {"club"}


async def test_the_public_calendar_shows_events_before_registration(db, clock):
    registry = build_registry()
    registry.command(Command("calendar", "flow:events_public"))
    person = EngineChat(DialogEngine(db, registry, clock=clock), 821)
    async with db.unit() as uow:
        municipality = await uow.reference.municipality_by_code("vsevolozhsky")
        start = datetime(2026, 12, 20, 15, 0, tzinfo=MSK).astimezone(timezone.utc)
        await ev.create_event(uow, None, municipality_id=municipality.id, type_code="club", title="Встреча клуба",
                              starts_at=start, ends_at=start + timedelta(hours=2), now=clock.now, place="ВРМЦ")
        await uow.commit()
    await person.send("/start")
    await person.press("Всеволожский район")
    await person.press("Не согласен(на)")

    await person.send("/calendar")
    await person.press(button_with(person, "20.12 15:00"))

    assert person.last_text().startswith("«Встреча клуба»")
    assert "Записаться на мероприятие можно после регистрации в боте." in person.last_text()
    assert person.buttons() == ["📆 Добавить в календарь", "Зарегистрироваться", "К списку"]


@pytest.mark.parametrize("flow", flows.FLOWS, ids=lambda flow: flow.name)
def test_every_go_target_of_the_events_flows_exists(flow):
    registry = build_registry()

    assert check_flow(flow, list(registry.flows)) == []

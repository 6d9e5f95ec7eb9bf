"""Mentoring through the engine on real storage: matching, approving, accepting, logging, confirming."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from dialogs.flows import mentoring as flows
from storage.models import Member
from storage.models_mentoring import MentorMeeting, MentorPair, MentorProfile, MentorProposal
from storage.models_outbox import OutboxMessage
from tests.support.driver import EngineChat, register_coordinator, register_teacher

TEACHER = "Молодова Мария Петровна"
MENTOR = "Опытнова Анна Ивановна"
SECOND_MENTOR = "Запасова Вера Ивановна"


async def register_mentor(person: EngineChat, db, name: str, *, subject: str = "Филология",
                          strength: str = "Методические") -> None:
    await register_teacher(person, name=name, role_label="Наставник", subject=subject, start_year="2021",
                           birth_year="1980")
    async with db.unit() as uow:
        await uow.session.execute(update(Member).where(Member.full_name == name).values(mentor_confirmed=True))
        await uow.commit()
    await person.send("/menu")
    await person.press("🧑‍🏫 Профиль наставника")
    await person.press("✏️ Заполнить или изменить")
    await person.press("Высшая")
    await person.press(f"☐ {strength}")
    await person.press("Готово ✅")
    await person.press("☐ Не выделяю")
    await person.press("Готово ✅")
    await person.press("2")
    await person.press("Только из своей организации")
    await person.press("Да")
    await person.press("Не указывать")


async def ask_for_mentor(person: EngineChat) -> None:
    await person.send("/menu")
    await person.press("🤝 Наставник")
    await person.press("Попросить наставника")
    await person.press("☐ Методические")
    await person.press("Готово ✅")
    await person.press("Да")
    await person.press("Не указывать")


def label_with(person: EngineChat, part: str) -> str:
    for label in person.buttons():
        if part in label:
            return label
    raise AssertionError(f"no button with {part!r}: {person.buttons()}")


async def open_matching(coordinator: EngineChat) -> None:
    await coordinator.send("/menu")
    await coordinator.press("🧩 Подбор наставников")


async def approve_first(coordinator: EngineChat) -> None:
    await open_matching(coordinator)
    await coordinator.press("▶️ Подобрать пары")
    await coordinator.press(label_with(coordinator, "✳"))
    await coordinator.press("✅ Одобрить")


async def accept_offer(mentor: EngineChat) -> None:
    await mentor.send("/menu")
    await mentor.press("👥 Мои наставляемые")
    await mentor.press("📨 Предложения")
    await mentor.press(label_with(mentor, TEACHER))
    await mentor.press("✅ Принять")


async def world(chat, db, clock, *, mentors: int = 1):
    coordinator, teacher = chat(7001), chat(7002)
    await register_coordinator(coordinator, db, clock)
    await register_teacher(teacher, name=TEACHER)
    mentor_chats = [chat(7003)]
    await register_mentor(mentor_chats[0], db, MENTOR)
    if mentors > 1:
        mentor_chats.append(chat(7004))
        await register_mentor(mentor_chats[1], db, SECOND_MENTOR, subject="Математика и информатика",
                              strength="ИКТ (цифровые)")
    await ask_for_mentor(teacher)
    return coordinator, teacher, mentor_chats


async def rows(db, model, *where):
    async with db.unit() as uow:
        key = model.member_id if model is MentorProfile else model.id
        return list((await uow.session.execute(select(model).where(*where).order_by(key))).scalars())


# ---- tests ----------------------------------------------------------------------------------


async def test_a_mentor_fills_the_profile_in_the_dialog(chat, db, clock):
    mentor = chat(7003)

    await register_mentor(mentor, db, MENTOR)

    [profile] = await rows(db, MentorProfile)
    assert (profile.category, profile.strengths, profile.help_directions, profile.capacity) == (
        "highest", ["methodical"], [], 2)
    assert (profile.accepts_network, profile.share_link, profile.contact_phone) == (False, True, None)
    assert mentor.texts()[0] == "Профиль наставника сохранён."
    assert "Сильные стороны: Методические" in mentor.last_text()


async def test_a_teacher_asks_for_a_mentor_from_the_menu(chat, db, clock):
    teacher = chat(7002)
    await register_teacher(teacher, name=TEACHER)

    await ask_for_mentor(teacher)

    assert teacher.texts()[0].startswith("Запрос принят")
    assert "Координатор подбирает пару" in teacher.last_text()
    assert "Отменить запрос" in teacher.buttons()


async def test_the_coordinator_runs_matching_and_sees_why_a_pair_is_proposed(chat, db, clock):
    coordinator, _teacher, _mentors = await world(chat, db, clock)

    await open_matching(coordinator)
    run = await coordinator.press("▶️ Подобрать пары")
    await coordinator.press(label_with(coordinator, "✳"))

    assert run.messages[0].text == "Предложено пар: 1. Проверьте и одобрите их."
    assert "Почему: одна школа, один предмет, методические дефициты" in coordinator.last_text()
    assert coordinator.buttons()[:3] == ["✅ Одобрить", "✖ Отклонить", "🔁 Другой наставник"]


async def test_approving_sends_the_mentor_a_proposal(chat, db, clock):
    coordinator, _teacher, _mentors = await world(chat, db, clock)

    await approve_first(coordinator)

    assert coordinator.texts()[0] == "Одобрено: наставнику отправлено предложение."
    [proposal] = await rows(db, MentorProposal)
    assert proposal.state == "approved"
    [notice] = await rows(db, OutboxMessage, OutboxMessage.kind == "mentoring.proposal")
    assert notice.buttons == [["Открыть предложение", "flow:mentor_proposals"]]


async def test_the_mentor_accepts_and_both_get_each_others_contacts(chat, db, clock):
    coordinator, _teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)

    await accept_offer(mentor)

    assert mentor.texts()[0].startswith(f"Пара создана: {TEACHER}")
    [pair] = await rows(db, MentorPair)
    assert pair.ended_at is None
    pair_notices = await rows(db, OutboxMessage, OutboxMessage.kind == "mentoring.pair")
    assert len(pair_notices) == 2
    assert all("Предлагаем встретиться" in n.text for n in pair_notices)


async def test_the_mentor_logs_a_meeting_in_a_few_taps(chat, db, clock):
    coordinator, _teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)
    await accept_offer(mentor)

    await mentor.send("/menu")
    await mentor.press("🗓 Записать встречу")
    await mentor.press("Сегодня")
    await mentor.press("45 мин")
    await mentor.press("Очно, в ОУ")
    await mentor.press("Консультация")
    await mentor.press("☐ Методические")
    await mentor.press("Готово ✅")
    await mentor.send("Разобрали план урока; следующий шаг — посещение урока")

    assert mentor.texts()[0].startswith("Встреча записана: 26.11.2026 · Консультация · 45 мин · ⏳")
    [meeting] = await rows(db, MentorMeeting)
    assert (meeting.held_on.isoformat(), meeting.duration_min, meeting.format, meeting.activity) == (
        "2026-11-26", 45, "in_school", "consultation")
    assert (meeting.deficits, meeting.confirmed) == (["methodical"], "pending")
    assert meeting.note.startswith("Разобрали план урока")


async def test_the_mentee_confirms_the_meeting(chat, db, clock):
    coordinator, teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)
    await accept_offer(mentor)
    clock.advance(days=2)
    await mentor.send("/menu")
    await mentor.press("🗓 Записать встречу")
    await mentor.press("Вчера")
    await mentor.press("30 мин")
    await mentor.press("Онлайн")
    await mentor.press("Мастер-класс")
    await mentor.press("☐ Без привязки к дефицитам")
    await mentor.press("Готово ✅")
    await mentor.press("Пропустить")
    assert mentor.texts()[0].startswith("Встреча записана"), mentor.texts()

    await teacher.send("/menu")
    await teacher.press("🤝 Наставник")
    assert f"Ваш наставник: {MENTOR}" in teacher.last_text()
    await teacher.press("Подтвердить встречи")
    await teacher.press("27.11.2026 · Мастер-класс · 30 мин · ⏳")
    await teacher.press("✅ Встреча была")

    assert teacher.texts()[0] == "Спасибо, отмечено."
    [meeting] = await rows(db, MentorMeeting)
    assert meeting.confirmed == "yes" and meeting.deficits == []
    assert teacher.last_text() == "Нет встреч, ждущих подтверждения."


async def test_a_decline_leads_to_the_next_proposal(chat, db, clock):
    coordinator, _teacher, [best, second] = await world(chat, db, clock, mentors=2)
    await approve_first(coordinator)
    [first] = await rows(db, MentorProposal)

    await best.send("/menu")
    await best.press("👥 Мои наставляемые")
    await best.press("📨 Предложения")
    await best.press(label_with(best, TEACHER))
    declined = await best.press("Отказаться")
    await open_matching(coordinator)
    await coordinator.press("Предложения")

    assert declined.messages[0].text.startswith("Вы отказались")
    assert first.mentor_id != (await rows(db, MentorProposal, MentorProposal.state == "proposed"))[0].mentor_id
    assert [label for label in coordinator.buttons() if label.startswith("✳")] == ["✳ Молодова М. П. → Запасова В. И. (5)"]
    await coordinator.press("✳ Молодова М. П. → Запасова В. И. (5)")
    await coordinator.press("✅ Одобрить")
    await second.send("/menu")
    await second.press("👥 Мои наставляемые")
    assert "📨 Предложения" in second.buttons()


async def test_accepting_a_proposal_the_coordinator_withdrew_gets_a_clear_answer(chat, db, clock):
    coordinator, _teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)
    await mentor.send("/menu")
    await mentor.press("👥 Мои наставляемые")
    await mentor.press("📨 Предложения")
    await mentor.press(label_with(mentor, TEACHER))

    await coordinator.press(label_with(coordinator, "⏳"))
    await coordinator.press("↩ Отозвать")
    reply = await mentor.press("✅ Принять")

    assert reply.messages[0].text == "Это предложение уже отозвано координатором."
    assert await rows(db, MentorPair) == []


async def test_a_meeting_dated_in_the_future_is_refused(chat, db, clock):
    coordinator, _teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)
    await accept_offer(mentor)
    await mentor.send("/menu")
    await mentor.press("🗓 Записать встречу")
    await mentor.press("Другая дата")

    reply = await mentor.send("30.11.2026")

    assert reply.messages[0].text.startswith("Эта дата ещё не наступила")
    assert mentor.last_text().startswith("Напишите дату встречи")


async def test_the_coordinator_pairs_by_hand_and_ends_the_pair(chat, db, clock):
    coordinator, teacher, [_mentor] = await world(chat, db, clock)

    await open_matching(coordinator)
    await coordinator.press("Пара вручную")
    await coordinator.send("Молодова")
    await coordinator.press(label_with(coordinator, TEACHER))
    await coordinator.press(label_with(coordinator, "Опытнова"))
    assert coordinator.texts()[0].startswith("Пара создана")
    await coordinator.press("Действующие пары")
    await coordinator.press("Молодова М. П. — Опытнова А. И.")
    await coordinator.press("Завершить пару")
    await coordinator.press("Цели достигнуты")

    assert coordinator.texts()[0].startswith("Пара завершена")
    [pair] = await rows(db, MentorPair)
    assert (pair.end_reason, pair.ended_at is not None) == ("goals_met", True)
    await teacher.send("/menu")
    await teacher.press("🤝 Наставник")
    await teacher.press("История встреч")
    assert teacher.last_text().startswith(f"Наставник {MENTOR}")


async def test_a_nudge_button_opens_the_meeting_log(chat, db, clock):
    coordinator, _teacher, [mentor] = await world(chat, db, clock)
    await approve_first(coordinator)
    await accept_offer(mentor)

    reply = await mentor.send("/__go__ meeting_log")

    assert reply.last_text == "Когда была встреча?"


async def test_proposal_reasons_read_as_russian_text():
    assert flows.render_reasons(["same_school", "same_subject", "deficit:methodical", "same_kind"]) == (
        "одна школа, один предмет, методические дефициты")
    assert flows.render_reasons(["network", "deficit:subject", "deficit:ict", "same_kind", "load:2"]) == (
        "сетевое наставничество, дефициты: предметные, цифровые (ИКТ), один тип организации, "
        "у наставника уже наставляемых: 2")
    assert flows.render_reasons(["same_school"], "preschool") == "одна организация"


def test_every_mentoring_screen_is_reachable():
    source = open(flows.__file__, encoding="utf-8").read()
    returned = set(re.findall(r'return "(\w+)"', source)) | set(re.findall(r'go=send_message\("(\w+)"\)', source))
    for flow in flows.FLOWS:
        targets = {flow.start} | returned
        for screen in flow.screens:
            targets |= {t for t in [screen.go, *(b.go for b in screen.buttons)] if isinstance(t, str)}
        unreachable = {screen.id for screen in flow.screens} - targets
        assert not unreachable, f"{flow.name}: {unreachable}"


def test_the_score_weights_come_from_the_settings():
    from types import SimpleNamespace

    from bot.settings import Settings
    from dialogs.flows.mentoring import weights_of

    settings = Settings(matching={"same_school": 10, "min_score": 2})

    weights = weights_of(SimpleNamespace(config=settings))

    assert (weights.same_school, weights.same_subject, weights.min_score) == (10, 3, 2)

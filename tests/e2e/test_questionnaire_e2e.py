"""The young-teacher questionnaire end to end: real aiogram over HTTP through the Telegram emulator.

A coordinator opens a campaign in the bot, the invitation goes out through the outbox, and the
teacher answers all 28 questions (with «Другое», ticks, going back, the bot restarting halfway and
an edit on the review screen); then every stored answer is checked.
"""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from dialogs.flows.questionnaire import option_labels
from dialogs.model import ExternalId
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.senders import TelegramSender
from storage.models_surveys import SurveyAnswer, SurveyResponse
from storage.services import consent as consent_service
from storage.services import members as member_service
from storage.services import surveys as S
from storage.services.invites import create_invite
from storage.services.outbox import parse_quiet_hours
from tests.e2e.conftest import say, tap

YOUNG = S.builtin_questionnaires()["young_teacher"]
QUIET = parse_quiet_hours("22:00-08:00")
DONE = "Готово ✅"


def label(code: str, option: str, *, tick: bool = False) -> str:
    text = option_labels(YOUNG.question(code))[option]
    return f"☐ {text}" if tick else text


@pytest.fixture
async def broadcaster(emulator):
    bot = emulator.make_bot()
    sending = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})
    yield sending
    await sending.close()
    await bot.session.close()


async def young_teacher_in_db(db, chat, clock) -> None:
    """A registered young teacher of a Vsevolozhsk school behind this chat (registration has its own tests)."""
    who = ExternalId("telegram", str(chat.user_id), str(chat.chat_id))
    async with db.unit() as uow:
        municipality = await uow.reference.municipality_by_code("vsevolozhsky")
        school = (await uow.reference.organisations(municipality.id, kind="school"))[0]
        await consent_service.give_consent(uow, who, municipality_id=municipality.id, now=clock.now)
        await member_service.register_member(
            uow, who, role="teacher", full_name="Соколова Дарья Игоревна", municipality_id=municipality.id,
            now=clock.now, organisation_id=school.id, subject_area="philology", teaching_start_year=2025,
            birth_year=2000,
        )
        await uow.commit()


async def tick_all(chat, code: str, *options: str) -> None:
    for option in options:
        await tap(chat, label(code, option, tick=True))
    await tap(chat, DONE)


async def test_a_teacher_invited_by_the_campaign_fills_the_whole_questionnaire_across_a_restart(
    tg, db, clock, broadcaster
):
    coordinator, teacher = tg.chat(), tg.chat()
    await young_teacher_in_db(db, teacher, clock)
    await say(teacher, "/start")
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await say(coordinator, "/start")
    await tap(coordinator, "Всеволожский район")
    await tap(coordinator, "Согласен(на)")
    await tap(coordinator, "У меня есть код приглашения")
    await say(coordinator, code)
    await say(coordinator, "Кузнецова Елена Викторовна")
    await tap(coordinator, "Всё верно")
    await tap(coordinator, "📊 Кампании анкетирования")
    await tap(coordinator, "Открыть новую кампанию")
    await tap(coordinator, "Анкета для молодых педагогов (Приложение 3)")
    card = await tap(coordinator, "С сегодняшнего дня на 30 дней")
    assert "Ответили: 0 из 1 (0%)" in card

    report = await dispatch_due(db, broadcaster, clock.now, quiet=QUIET)
    invitation = (await teacher.wait_for(2))[-1]
    assert report.sent == 1 and invitation.content.startswith("Приглашаем ответить на «Анкета для молодых педагогов»")
    intro = await tap(teacher, "Заполнить анкету")
    assert intro.startswith("Анкета для молодых педагогов")

    first = await tap(teacher, "Начать")
    await tap(teacher, "Женский")
    await tap(teacher, "до 25 лет")
    await tap(teacher, "от 1 года до 2 лет")
    other_prompt = await tap(teacher, label("q4", "other"))
    await say(teacher, "Бакалавриат и переподготовка")
    await tap(teacher, "Учитель")
    await say(teacher, "РГПУ им. А. И. Герцена")
    await say(teacher, "2024")
    back = await tap(teacher, "« Назад")
    await say(teacher, "2023")
    await tap(teacher, "Осознанный")
    await tick_all(teacher, "q9", "master", "second_higher")
    await tap(teacher, "Частично")
    await tap(teacher, label("q11", "career"))
    await tick_all(teacher, "q12", "discipline", "time", "other")
    await say(teacher, "Много отчётов")
    await tick_all(teacher, "q13", "methodical", "selforg")
    await tick_all(teacher, "q14", "peer_community", "qualification", "other")
    before_restart = await say(teacher, "Оценивание")

    await tg.restart()

    await tap(teacher, "Ежедневно")
    await say(teacher, "Помогает с планированием уроков")
    await tap(teacher, "мастер-класс")
    await tap(teacher, label("q18", "creative_group"))
    await tap(teacher, "да")
    await say(teacher, "Работа с родителями")
    await tick_all(teacher, "q21", "master_class", "conferences")
    await tap(teacher, "Нет")
    await say(teacher, "Не участвовала")
    await say(teacher, "Форум молодых педагогов")
    await tap(teacher, "Да")
    await tap(teacher, "Да")
    await say(teacher, "Квесты: знакомимся с коллегами")
    review = await say(teacher, "Мастер-классы по воспитательной работе")
    await tap(teacher, "Изменить ответ")
    await tap(teacher, "1. Ваш пол")
    edited = await tap(teacher, "Мужской")
    thanks = await tap(teacher, "Отправить анкету")

    assert first.startswith("Вопрос 1 из 28") and "Напишите свой вариант ответа" in other_prompt
    assert back.startswith("Вопрос 7 из 28") and "Ваш ответ: 2024" in back
    assert before_restart.startswith("Вопрос 15 из 28")
    assert review.startswith("Проверьте ответы") and "1. Ваш пол\n   Женский" in review
    assert "1. Ваш пол\n   Мужской" in edited
    assert thanks.startswith("Спасибо! Анкета отправлена")
    async with db.unit() as uow:
        response = (await uow.session.execute(select(SurveyResponse))).scalar_one()
        rows = await uow.session.execute(select(SurveyAnswer.question_code, SurveyAnswer.value, SurveyAnswer.other_text))
        stored = {code: (value, other) for code, value, other in rows}
    assert response.status == "submitted"
    assert stored == {
        "q1": ("male", None), "q2": ("under_25", None), "q3": ("from_1_to_2", None),
        "q4": ("other", "Бакалавриат и переподготовка"), "q5": ("teacher", None),
        "q6": ("РГПУ им. А. И. Герцена", None), "q7": (2023, None), "q8": ("conscious", None),
        "q9": (["master", "second_higher"], None), "q10": ("partly", None), "q11": ("career", None),
        "q12": (["discipline", "time", "other"], "Много отчётов"), "q13": (["methodical", "selforg"], None),
        "q14": (["peer_community", "qualification", "other"], "Оценивание"), "q15": ("daily", None),
        "q16": ("Помогает с планированием уроков", None), "q17": ("master_class", None),
        "q18": ("creative_group", None), "q19": ("yes", None), "q20": ("Работа с родителями", None),
        "q21": (["master_class", "conferences"], None), "q22": ("no", None), "q23": ("Не участвовала", None),
        "q24": ("Форум молодых педагогов", None), "q25": ("yes", None), "q26": ("yes", None),
        "q27": ("Квесты: знакомимся с коллегами", None), "q28": ("Мастер-классы по воспитательной работе", None),
    }

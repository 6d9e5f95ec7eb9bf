"""The young-teacher questionnaire answered in full, the same way in every channel's end-to-end test.

`answer_everything(teacher, restart)` answers all 28 questions from the intro screen: «Другое»
with a typed answer, ticks of multiple choice, one step back, the bot restarting halfway (the
caller's `restart`), and an edit on the review screen; `check_screens` asserts on what the
teacher saw and `STORED` is what the database must then hold, question by question.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from dialogs.flows.questionnaire import option_labels
from dialogs.model import ExternalId
from storage.models_surveys import SurveyAnswer, SurveyResponse
from storage.services import surveys as S
from storage.unit_of_work import Database
from tests.support.people import registered
from tests.support.scenarios import Actor

YOUNG = S.builtin_questionnaires()["young_teacher"]
DONE = "Готово ✅"

STORED = {
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


def label(code: str, option: str, *, tick: bool = False) -> str:
    """The button of an option as the flow draws it (with the unticked box on multiple choice)."""
    text = option_labels(YOUNG.question(code))[option]
    return f"☐ {text}" if tick else text


async def young_teacher_in_db(db: Database, who: ExternalId, now: datetime) -> None:
    """A registered young teacher of a Vsevolozhsk school behind `who`."""
    async with db.unit() as uow:
        municipality = await uow.reference.municipality_by_code("vsevolozhsky")
        school = (await uow.reference.organisations(municipality.id, kind="school"))[0]
        await registered(
            uow, who, now, role="teacher", name="Соколова Дарья Игоревна", organisation_id=school.id,
            subject_area="philology", teaching_start_year=2025, birth_year=2000,
        )
        await uow.commit()


@dataclass
class Screens:
    """The screens worth checking on the way through the questionnaire."""

    first: str
    other_prompt: str
    back: str
    before_restart: str
    review: str
    edited: str
    thanks: str


async def tick_all(teacher: Actor, code: str, *options: str) -> None:
    for option in options:
        await teacher.tap(label(code, option, tick=True))
    await teacher.tap(DONE)


async def answer_everything(teacher: Actor, restart: Callable[[], Awaitable[None]]) -> Screens:
    """From the questionnaire's intro screen to «Отправить анкету»; `restart` is awaited after question 14."""
    first = await teacher.tap("Начать")
    await teacher.tap("Женский")
    await teacher.tap("до 25 лет")
    await teacher.tap("от 1 года до 2 лет")
    other_prompt = await teacher.tap(label("q4", "other"))
    await teacher.say("Бакалавриат и переподготовка")
    await teacher.tap("Учитель")
    await teacher.say("РГПУ им. А. И. Герцена")
    await teacher.say("2024")
    back = await teacher.tap("« Назад")
    await teacher.say("2023")
    await teacher.tap("Осознанный")
    await tick_all(teacher, "q9", "master", "second_higher")
    await teacher.tap("Частично")
    await teacher.tap(label("q11", "career"))
    await tick_all(teacher, "q12", "discipline", "time", "other")
    await teacher.say("Много отчётов")
    await tick_all(teacher, "q13", "methodical", "selforg")
    await tick_all(teacher, "q14", "peer_community", "qualification", "other")
    before_restart = await teacher.say("Оценивание")

    await restart()

    await teacher.tap("Ежедневно")
    await teacher.say("Помогает с планированием уроков")
    await teacher.tap("мастер-класс")
    await teacher.tap(label("q18", "creative_group"))
    await teacher.tap("да")
    await teacher.say("Работа с родителями")
    await tick_all(teacher, "q21", "master_class", "conferences")
    await teacher.tap("Нет")
    await teacher.say("Не участвовала")
    await teacher.say("Форум молодых педагогов")
    await teacher.tap("Да")
    await teacher.tap("Да")
    await teacher.say("Квесты: знакомимся с коллегами")
    review = await teacher.say("Мастер-классы по воспитательной работе")
    await teacher.tap("Изменить ответ")
    await teacher.tap("1. Ваш пол")
    edited = await teacher.tap("Мужской")
    thanks = await teacher.tap("Отправить анкету")
    return Screens(first, other_prompt, back, before_restart, review, edited, thanks)


def check_screens(seen: Screens) -> None:
    """What the teacher must have seen on the way."""
    assert seen.first.startswith("Вопрос 1 из 28") and "Напишите свой вариант ответа" in seen.other_prompt
    assert seen.back.startswith("Вопрос 7 из 28") and "Ваш ответ: 2024" in seen.back
    assert seen.before_restart.startswith("Вопрос 15 из 28")
    assert seen.review.startswith("Проверьте ответы") and "1. Ваш пол\n   Женский" in seen.review
    assert "1. Ваш пол\n   Мужской" in seen.edited
    assert seen.thanks.startswith("Спасибо! Анкета отправлена")


async def stored_answers(db: Database) -> tuple[str, dict]:
    """The one response's status and its answers: {question code: (value, other text)}."""
    async with db.unit() as uow:
        response = (await uow.session.execute(select(SurveyResponse))).scalar_one()
        rows = await uow.session.execute(
            select(SurveyAnswer.question_code, SurveyAnswer.value, SurveyAnswer.other_text)
        )
        return response.status, {code: (value, other) for code, value, other in rows}

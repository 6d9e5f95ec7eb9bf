"""Taking questionnaires through the engine, the coordinator's campaigns, and reporting deficits."""

from __future__ import annotations

from datetime import date
from io import BytesIO

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from dialogs.engine import DialogEngine
from dialogs.flows.questionnaire import option_labels
from dialogs.registry import build_registry
from storage.models import Member
from storage.models_surveys import (
    AnonymousAnswer,
    DeficitItem,
    DeficitReport,
    SurveyAnswer,
    SurveyMark,
    SurveyResponse,
)
from storage.services import invites
from storage.services import surveys as S
from tests.support.driver import EngineChat, register_teacher

BUILTIN = S.builtin_questionnaires()
YOUNG = BUILTIN["young_teacher"]
SUPPORT = BUILTIN["teacher_support"]
MENU_ITEM = "📝 Анкета молодого педагога"
BACK = "« Назад"
DONE = "Готово ✅"


def label(code: str, option: str, *, ticked: bool | None = None, questionnaire=YOUNG) -> str:
    """The button label of an option as the flow draws it (with a tick box on multi questions)."""
    text = option_labels(questionnaire.question(code))[option]
    if ticked is None:
        return text
    return f"{'☑' if ticked else '☐'} {text}"


async def open_campaign(db, clock, code: str = S.YOUNG_TEACHER):
    async with db.unit() as uow:
        muni = await uow.reference.municipality_by_code("vsevolozhsky")
        actor = Member(role="coordinator", full_name="Координатор Ольга Ивановна", municipality_id=muni.id,
                       mentor_confirmed=False, created_at=clock.now, updated_at=clock.now, last_seen_at=clock.now)
        uow.members.add(actor)
        await uow.flush()
        campaign = await S.open_campaign(uow, actor, questionnaire_code=code, now=clock.now,
                                         opens_on=date(2026, 11, 1), closes_on=date(2026, 12, 31))
        await uow.commit()
    return campaign


async def register_coordinator(chat: EngineChat, db, clock) -> None:
    async with db.unit() as uow:
        code = await invites.create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await chat.send("/start")
    await chat.press("Всеволожский район")
    await chat.press("Согласен(на)")
    await chat.press("У меня есть код приглашения")
    await chat.send(code)
    await chat.send("Петрова Ольга Ивановна")
    await chat.press("Всё верно")
    assert chat.last_text().startswith("Главное меню"), chat.last_text()


async def tick(person: EngineChat, code: str, *options: str, questionnaire=YOUNG) -> None:
    for option in options:
        await person.press(label(code, option, ticked=False, questionnaire=questionnaire))


async def stored_answers(db) -> dict[str, tuple]:
    async with db.unit() as uow:
        rows = await uow.session.execute(select(SurveyAnswer.question_code, SurveyAnswer.value, SurveyAnswer.other_text))
        return {code: (value, other) for code, value, other in rows}


async def start_young(chat, db, clock, user_id=701) -> EngineChat:
    person = chat(user_id)
    await register_teacher(person)
    await open_campaign(db, clock)
    await person.press(MENU_ITEM)
    await person.press("Начать")
    return person


async def answer_up_to_q7(person: EngineChat) -> None:
    await person.press("Женский")
    await person.press("до 25 лет")
    await person.press("от 1 года до 2 лет")
    await person.press("6. Аспирантура")
    await person.press("Учитель")
    await person.send("РГПУ им. А. И. Герцена")


# ---- the whole young-teacher questionnaire --------------------------------------------------------


async def test_a_young_teacher_fills_the_whole_questionnaire_and_every_answer_is_stored(chat, db, clock):
    person = await start_young(chat, db, clock)
    assert person.last_text().startswith("Вопрос 1 из 28\n\nВаш пол")

    await person.press("Женский")
    await person.press("до 25 лет")
    await person.press("от 1 года до 2 лет")
    await person.press(label("q4", "other"))
    assert "Напишите свой вариант ответа" in person.last_text()
    await person.send("Бакалавриат и переподготовка")
    await person.press("Учитель")
    await person.send("РГПУ им. А. И. Герцена")
    assert person.last_text().startswith("Вопрос 7 из 28")
    await person.send("2024")
    assert person.last_text().startswith("Вопрос 8 из 28")
    await person.press(BACK)  # change the previous answer
    assert "Ваш ответ: 2024" in person.last_text()
    await person.send("2023")
    await person.press("Осознанный")
    await tick(person, "q9", "master", "second_higher")
    await person.press(DONE)
    await person.press("Частично")
    await person.press(label("q11", "career"))
    await tick(person, "q12", "discipline", "time", "other")
    await person.press(DONE)
    await person.send("Много отчётов")
    await tick(person, "q13", "methodical", "selforg")
    await person.press(DONE)
    await tick(person, "q14", "peer_community", "qualification", "other")
    await person.press(DONE)
    await person.send("Оценивание")
    assert person.last_text().startswith("Вопрос 15 из 28")

    restarted = EngineChat(DialogEngine(db, build_registry(), clock=clock), 701)  # a new process, same database
    restarted.history = list(person.history)
    person = restarted
    await person.press("Ежедневно")
    await person.send("Помогает с планированием уроков")
    await person.press("мастер-класс")
    await person.press(label("q18", "creative_group"))
    await person.press("да")
    await person.send("Работа с родителями")
    await tick(person, "q21", "master_class", "conferences")
    await person.press(DONE)
    await person.press("Нет")
    await person.send("Не участвовала")
    await person.send("Форум молодых педагогов")
    await person.press("Да")
    await person.press("Да")
    await person.send("Квесты: знакомимся с коллегами")
    await person.send("Мастер-классы по воспитательной работе")
    assert person.last_text().startswith("Проверьте ответы перед отправкой")
    await person.press("Изменить ответ")
    await person.press("1. Ваш пол")
    await person.press("Мужской")
    review = person.last_text()
    await person.press("Отправить анкету")

    assert "1. Ваш пол\n   Мужской" in review and "28. Какие мероприятия" in review
    assert person.last_text().startswith("Спасибо! Анкета отправлена")
    assert await stored_answers(db) == {
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
    async with db.unit() as uow:
        response = (await uow.session.execute(select(SurveyResponse))).scalar_one()
        items = set((await uow.session.execute(select(DeficitItem.kind, DeficitItem.code))).all())
    assert response.status == "submitted"
    assert ("deficit_group", "selforg") in items and ("difficulty", "time") in items


# ---- validation, conditions, pause -----------------------------------------------------------------


async def test_a_graduation_year_must_be_four_plausible_digits(chat, db, clock):
    person = await start_young(chat, db, clock, 702)
    await answer_up_to_q7(person)

    bad_format = await person.send("двадцать первый")
    too_late = await person.send("2031")

    assert bad_format.messages[0].text == "Напишите год четырьмя цифрами, например 2021."
    assert too_late.messages[0].text == "Год должен быть от 1950 до 2026. Проверьте, пожалуйста."
    assert person.last_text().startswith("Вопрос 7 из 28")
    assert "q7" not in await stored_answers(db)


async def test_done_without_a_tick_asks_for_one_and_an_exclusive_option_clears_the_others(chat, db, clock):
    person = await start_young(chat, db, clock, 703)
    await answer_up_to_q7(person)
    await person.send("2022")
    await person.press("Случайный")

    empty = await person.press(DONE)
    await tick(person, "q9", "master")
    await person.press(label("q9", "no", ticked=False))

    assert empty.messages[0].text == "Отметьте хотя бы один вариант, затем нажмите «Готово»."
    assert label("q9", "no", ticked=True) in person.buttons()
    assert label("q9", "master", ticked=False) in person.buttons()


async def test_club_questions_are_skipped_after_no(chat, db, clock):
    person = await start_young(chat, db, clock, 704)
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member).where(Member.role == "teacher"))).scalar_one()
        response = (await uow.session.execute(select(SurveyResponse))).scalar_one()
        questionnaire = await S.questionnaire_for_response(uow, response, member)
        from tests.storage.test_surveys import YOUNG as ANSWERS

        for code, (value, other) in ANSWERS.items():
            if code != "q26":
                await S.save_answer(uow, response, questionnaire, code, value, other, now=clock.now)
        await S.set_position(uow, response, "q26", now=clock.now)
        await uow.commit()
    await person.press("Продолжить позже")
    await person.press(MENU_ITEM)
    await person.press("Продолжить")
    assert person.last_text().startswith("Вопрос 26 из 28")

    await person.press("Нет")

    assert person.last_text().startswith("Проверьте ответы перед отправкой")
    assert "27." not in person.last_text()


async def test_a_pause_resumes_exactly_at_the_same_question(chat, db, clock):
    person = await start_young(chat, db, clock, 705)
    await answer_up_to_q7(person)

    paused = await person.press("Продолжить позже")
    await person.press(MENU_ITEM)
    intro = person.last_text()
    await person.press("Продолжить")

    assert paused.messages[0].text.startswith("Ответы сохранены")
    assert "Вы остановились на вопросе 7 из 28." in intro
    assert person.last_text().startswith("Вопрос 7 из 28")
    assert len(await stored_answers(db)) == 6


async def test_without_an_open_campaign_the_teacher_is_told_so(chat):
    person = chat(706)
    await register_teacher(person)

    await person.press(MENU_ITEM)

    assert person.last_text().startswith("Сейчас нет открытых для вас анкет")


# ---- the anonymous survey ---------------------------------------------------------------------------


async def test_the_anonymous_survey_asks_a_matrix_row_by_row_and_stores_no_link(chat, db, clock):
    person = chat(707)
    await register_teacher(person)
    await open_campaign(db, clock, S.TEACHER_SUPPORT)
    await person.press(MENU_ITEM)
    assert "Опрос анонимный" in person.last_text()
    await person.press("Начать")

    await tick(person, "q1", "lessons", "it", questionnaire=SUPPORT)
    await person.press(DONE)
    assert "Строка 1 из 5:\nОформление текущей школьной документации" in person.last_text()
    for _row in range(5):
        await person.press("Скорее нужно, чем нет")
    await tick(person, "q3", "consultations", questionnaire=SUPPORT)
    await person.press(DONE)
    await person.press(label("q4", "internet", questionnaire=SUPPORT))
    for _row in range(3):
        await person.press("Трудно сказать")
    await person.press("Скорее, да")
    await person.press("Затрудняюсь ответить")
    await person.press("Да")
    await person.press(BACK)  # inside the q8 matrix: back to the previous row
    assert "Строка 1 из 3:\n...школьного уровня?\n\nВаш ответ: Да" in person.last_text()
    await person.press("Да")
    await person.press("Нет")
    await person.press("Нет")
    await person.press("Нет")
    await person.press("Да")
    await person.press("Пропустить")  # q11 is optional
    await tick(person, "q12", "teacher", questionnaire=SUPPORT)
    await person.press(DONE)
    await tick(person, "q13", "philology", questionnaire=SUPPORT)
    await person.press(DONE)
    await person.press("Менее 5")
    await person.press(label("q15", "higher", questionnaire=SUPPORT))
    await person.press(label("q16", "none", questionnaire=SUPPORT))
    await person.press("Не имею категории")
    await person.press("Отправить анкету")

    assert person.last_text() == "Спасибо! Анкета отправлена анонимно."
    async with db.unit() as uow:
        rows = {r.question_code: r.value for r in (await uow.session.execute(select(AnonymousAnswer))).scalars()}
        marks = (await uow.session.execute(select(func.count()).select_from(SurveyMark))).scalar_one()
        responses = (await uow.session.execute(select(func.count(SurveyResponse.id)))).scalar_one()
    assert rows["q8"] == {"school": "yes", "district": "no", "regional": "no"}
    assert rows["q2"]["deficits_planning"] == "rather_yes" and "q11" not in rows
    assert (marks, responses) == (1, 0)


# ---- the coordinator ----------------------------------------------------------------------------------


async def test_a_coordinator_opens_a_campaign_and_sees_the_response_rate_by_school(chat, db, clock):
    teacher = chat(708)
    await register_teacher(teacher)
    coordinator = chat(709)
    await register_coordinator(coordinator, db, clock)

    await coordinator.press("📊 Кампании анкетирования")
    await coordinator.press("Открыть новую кампанию")
    await coordinator.press("Анкета для молодых педагогов (Приложение 3)")
    await coordinator.press("С сегодняшнего дня на 30 дней")

    card = coordinator.last_text()
    assert "Приглашений в очереди: 1" in coordinator.last.messages[0].text
    assert "Ответили: 0 из 1 (0%)" in card
    assert "• МОБУ «СОШ № 2», Кудрово: 0 / 0 / 1" in card


async def test_a_coordinator_gets_the_answers_as_an_xlsx_file(chat, db, clock):
    await start_young(chat, db, clock, 710)
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member).where(Member.role == "teacher"))).scalar_one()
        response = (await uow.session.execute(select(SurveyResponse))).scalar_one()
        questionnaire = await S.questionnaire_for_response(uow, response, member)
        from tests.storage.test_surveys import YOUNG as ANSWERS

        for code, (value, other) in ANSWERS.items():
            await S.save_answer(uow, response, questionnaire, code, value, other, now=clock.now)
        await S.submit(uow, member, response, questionnaire, now=clock.now)
        await uow.commit()
    coordinator = chat(711)
    await register_coordinator(coordinator, db, clock)
    await coordinator.press("📊 Кампании анкетирования")
    await coordinator.press(coordinator.buttons()[0])

    reply = await coordinator.press("Выгрузить XLSX")

    [file] = reply.messages[-1].files
    sheet = load_workbook(BytesIO(file.content)).active
    header = [c.value for c in sheet[1]]
    row = [c.value for c in sheet[2]]
    assert file.name.endswith(".xlsx") and sheet.max_row == 2
    assert row[header.index("Педагог")] == "Иванова Мария Петровна"
    assert row[header.index("12. Другое (свой вариант)")] == "Много отчётов"


async def test_a_coordinator_compares_a_teachers_answers_year_by_year(chat, db, clock):
    from tests.storage.test_surveys import add_member, coordinator as make_coordinator, two_years_of

    async with db.unit() as uow:
        teacher = await add_member(uow, name="Яковлева Анна Сергеевна")
        await two_years_of(uow, await make_coordinator(uow), teacher)
        await uow.commit()
    person = chat(713)
    await register_coordinator(person, db, clock)
    await person.press("📊 Кампании анкетирования")
    await person.press("Ответы педагога по годам")
    assert person.buttons()[0] == "Яковлева Анна Сергеевна (2)"

    await person.send("яковл")  # a search by part of the name
    reply = await person.press("Яковлева Анна Сергеевна (2)")

    text = reply.messages[-1].text
    assert text.startswith("Яковлева Анна Сергеевна: анкета молодого педагога, 05.2026 → 11.2026.")
    assert "Изменились ответы на 1 из 28 вопросов:\n\n3. Ваш педагогический стаж\n" in text
    assert "• 05.2026: от 1 года до 2 лет\n• 11.2026: от 2 лет до 3 лет" in text
    [file] = reply.messages[-1].files
    sheet = load_workbook(BytesIO(file.content)).active
    assert [c.value for c in sheet[1]] == ["№", "Вопрос", "05.2026", "11.2026"]
    assert "Яковлева" not in file.name
    rows = {row[0].value: [c.value for c in row] for row in sheet.iter_rows(min_row=2)}
    assert rows["3"][2:] == ["от 1 года до 2 лет", "от 2 лет до 3 лет"]


# ---- deficits -------------------------------------------------------------------------------------------


async def test_a_teacher_reports_a_deficit_from_the_menu(chat, db):
    person = chat(712)
    await register_teacher(person)

    await person.press("⚠️ Сообщить о затруднении")
    await person.press("☐ Методические")
    await person.press("☐ ИКТ (цифровые)")
    await person.press(DONE)
    await person.press(DONE)
    await person.press("☐ 3. Планирование, проведение и анализ…")
    await person.press(DONE)
    await person.send("Не успеваю проверять тетради")

    assert person.last.messages[0].text.startswith("Спасибо!")
    assert person.last_text().startswith("Главное меню")
    async with db.unit() as uow:
        report = (await uow.session.execute(select(DeficitReport))).scalar_one()
        items = sorted((await uow.session.execute(select(DeficitItem.kind, DeficitItem.code))).all())
    assert (report.source, report.comment) == ("self", "Не успеваю проверять тетради")
    assert items == [("deficit_group", "ict"), ("deficit_group", "methodical"), ("help_direction", "lessons")]


async def test_a_report_with_nothing_ticked_is_not_saved(chat, db):
    person = chat(713)
    await register_teacher(person)

    await person.press("⚠️ Сообщить о затруднении")
    for _step in range(3):
        await person.press(DONE)
    await person.press("Без комментария")

    assert person.last.messages[0].text.startswith("Вы ничего не отметили")
    async with db.unit() as uow:
        assert (await uow.session.execute(select(func.count(DeficitReport.id)))).scalar_one() == 0


async def test_a_coordinator_reads_the_deficit_summary_with_small_figures_hidden(chat, db, clock):
    from tests.storage.test_aggregation import people, report

    async with db.unit() as uow:
        teachers = await people(uow, 6, school=0)
        await report(uow, teachers[:2], groups=["methodical", "subject"], when=clock.now)
        await report(uow, teachers[2:], groups=["methodical"], when=clock.now)
        await uow.commit()
    coordinator = chat(720)
    await register_coordinator(coordinator, db, clock)

    await coordinator.press("📈 Сводка по дефицитам")
    await coordinator.press("Последние 4 недели")

    text = coordinator.last_text()
    assert text.startswith("Сводка по дефицитам: Всеволожский район\nПериод: 02.11.2026 – 26.11.2026")
    assert "Сообщили о затруднениях: 6 чел." in text
    assert "• Методические — 6 (100%)" in text
    assert "• Предметные — скрыто" in text


@pytest.mark.parametrize("flow", ["questionnaire", "campaigns", "deficits", "deficit_summary"])
def test_every_screen_of_the_flow_is_defined_once(flow):
    screens = [screen.id for screen in build_registry().flows[flow].screens]

    assert len(screens) == len(set(screens))


# ---- scheduled jobs -------------------------------------------------------------------------------------


async def test_the_campaign_job_invites_newcomers_and_reminds_weekly_those_not_finished(chat, db, clock):
    from dialogs.flows.questionnaire import queue_campaign_messages
    from storage.models_outbox import OutboxMessage

    person = chat(721)
    await register_teacher(person)
    campaign = await open_campaign(db, clock)

    async with db.unit() as uow:
        first = await queue_campaign_messages(uow, now=clock.now)
        again = await queue_campaign_messages(uow, now=clock.now)
        await uow.commit()
        keys = sorted((await uow.session.execute(select(OutboxMessage.key))).scalars())
        text = (await uow.session.execute(select(OutboxMessage.text).where(OutboxMessage.kind == "survey.reminder"))
                ).scalar_one()

    assert (first, again) == (2, 0)
    member_id = int(keys[0].rsplit(":", 1)[1])
    assert keys == [f"campaign:{campaign.id}:invite:{member_id}", f"campaign:{campaign.id}:remind:2026w48:{member_id}"]
    assert text.startswith("Напоминаем об анкете «Анкета для молодых педагогов»: ответить можно до 31.12.2026.")


async def test_the_monthly_nudge_job_reaches_young_teachers_with_a_button_to_the_deficit_flow(chat, db, clock):
    from dialogs.flows.deficits import queue_deficit_nudges
    from storage.models_outbox import OutboxMessage

    person = chat(722)
    await register_teacher(person)

    async with db.unit() as uow:
        queued = await queue_deficit_nudges(uow, now=clock.now)
        row = (await uow.session.execute(select(OutboxMessage))).scalar_one()

    assert queued == 1
    assert row.buttons == [["Сообщить о затруднении", "flow:deficits"]]

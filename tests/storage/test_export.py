"""Export of a campaign's answers (XLSX, CSV), from a service and from the command line."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone

import pytest
from openpyxl import load_workbook

from bot.commands_surveys import export_campaign_cli, import_questionnaire_cli
from storage.services import export as E
from storage.services import surveys as S
from storage.services.errors import Forbidden
from tests.storage.test_surveys import SUPPORT, YOUNG, add_member, answer_support, coordinator, fill

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
WINDOW = {"opens_on": date(2026, 11, 1), "closes_on": date(2026, 12, 31)}
OTHER_QUESTIONS = [4, 5, 8, 11, 12, 13, 14, 15, 17, 18, 21]  # questions of Приложение 3 with «Другое:»


async def young_campaign_with_answers(uow, *, texts=None):
    muni = await uow.reference.municipality_by_code("vsevolozhsky")
    if texts is not None:
        muni.texts = texts
    actor = await coordinator(uow)
    campaign = await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=NOW, **WINDOW)
    first = await add_member(uow, name="Белова Вера Андреевна", school=1)
    second = await add_member(uow, name="Абрамова Зоя Петровна", school=0)
    draft = await add_member(uow, name="Чернова Нина Олеговна")
    for member, answers in ((first, YOUNG), (second, {**YOUNG, "q1": ("male", None), "q7": (2021, None)})):
        response = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        await S.submit(uow, member, response, await fill(uow, member, response, answers), now=NOW)
    await S.start_or_resume(uow, draft, now=NOW, campaign_id=campaign.id)
    campaign.schools = {m.full_name: (await uow.reference.organisation(m.organisation_id)).name for m in (first, second)}
    return actor, campaign


def expected_headers(questionnaire) -> list[str]:
    headers = ["№", "Педагог", "Организация", "Отправлено"]
    for question in questionnaire.questions:
        headers.append(f"{question.number}. {question.text}")
        if question.number in OTHER_QUESTIONS:
            headers.append(f"{question.number}. Другое (свой вариант)")
    return headers


async def test_the_xlsx_has_a_row_per_submitted_response_and_a_column_per_question(db):
    async with db.unit() as uow:
        actor, campaign = await young_campaign_with_answers(uow, texts={"mms_name_genitive": "ВРМЦ"})

        exported = await E.export_campaign(uow, actor, campaign.id, "xlsx")
        questionnaire = S.rendered_for(await S.version_by_id(uow, campaign.version_id),
                                       await uow.reference.municipality(campaign.municipality_id))

    sheet = load_workbook(io.BytesIO(exported.content)).active
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    header, body = rows[0], rows[1:]
    assert exported.name == f"campaign_{campaign.id}_young_teacher_2026.xlsx"
    assert header == expected_headers(questionnaire) and len(header) == 4 + 28 + 11
    assert "19. Посещаете ли Вы консультации методистов ВРМЦ по своей предметной области" in header
    assert [row[1] for row in body] == ["Абрамова Зоя Петровна", "Белова Вера Андреевна"]  # no draft
    first = dict(zip(header, body[1]))
    assert first["Организация"] == campaign.schools["Белова Вера Андреевна"]
    assert first["Отправлено"].date() == date(2026, 11, 26)
    assert first["1. Ваш пол"] == "Женский"
    assert first["4. Уровень Вашего образования"] == "Другое:"
    assert first["4. Другое (свой вариант)"] == "Бакалавриат и переподготовка"
    assert first["7. Год окончания учебного заведения"] == 2024
    assert first["9. Обучаетесь ли Вы в настоящий момент в каком-нибудь высшем учебном заведении?"] == (
        "магистратура; второе высшее образование")
    assert first["12. Другое (свой вариант)"] == "Много отчётов"
    assert first["27. Какие мероприятия Клуба молодых педагогов Вам наиболее интересны и почему?"] is None
    assert dict(zip(header, body[0]))["7. Год окончания учебного заведения"] == 2021


async def test_the_csv_opens_with_the_same_columns(db):
    async with db.unit() as uow:
        actor, campaign = await young_campaign_with_answers(uow)

        exported = await E.export_campaign(uow, actor, campaign.id, "csv")
        questionnaire = S.rendered_for(await S.version_by_id(uow, campaign.version_id),
                                       await uow.reference.municipality(campaign.municipality_id))

    assert exported.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig")), delimiter=";"))
    assert rows[0] == expected_headers(questionnaire)
    assert len(rows) == 3 and rows[2][3] == "26.11.2026"
    assert rows[2][rows[0].index("12. Какие трудности Вы встретили в своей работе")] == (
        "Проблемы дисциплины на уроке; Проблемы нехватки времени; Другое:")


async def test_an_anonymous_campaign_exports_answers_without_names_and_a_column_per_matrix_row(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        campaign = await S.open_campaign(uow, actor, questionnaire_code=S.TEACHER_SUPPORT, now=NOW, **WINDOW)
        for school in (0, 1):
            member = await add_member(uow, school=school)
            response, questionnaire = await answer_support(uow, member, campaign)
            await S.submit(uow, member, response, questionnaire, now=NOW)

        exported = await E.export_campaign(uow, actor, campaign.id, "xlsx")

    rows = [[c.value for c in row] for row in load_workbook(io.BytesIO(exported.content)).active.iter_rows()]
    header = rows[0]
    assert header[:2] == ["№", "Дата"] and "Педагог" not in header
    assert "2. Насколько нужно научно-методическое сопровождение педагогов в перечисленных ниже видах его " \
           "деятельности? — Подготовка к аттестации" in header
    assert len(rows) == 3
    assert dict(zip(header, rows[1]))["1. Если хотите, сформулируйте Ваш вариант ответа (свой вариант)"] == (
        SUPPORT["q1"][1])


async def test_a_coordinator_of_another_municipality_cannot_export(db):
    async with db.unit() as uow:
        _actor, campaign = await young_campaign_with_answers(uow)
        stranger = await coordinator(uow, municipality="novotroitsk")

        with pytest.raises(Forbidden):
            await E.export_campaign(uow, stranger, campaign.id, "xlsx")


async def test_the_command_line_writes_the_file(db, tmp_path):
    async with db.unit() as uow:
        _actor, campaign = await young_campaign_with_answers(uow)
        await uow.commit()
    out = io.StringIO()

    status = await export_campaign_cli(db, campaign.id, "xlsx", tmp_path / "answers.xlsx", out=out)

    assert status == 0 and "exported 2 responses" in out.getvalue()
    assert load_workbook(tmp_path / "answers.xlsx").active.max_row == 3


async def test_the_command_line_refuses_an_unknown_campaign(db, tmp_path):
    err = io.StringIO()

    status = await export_campaign_cli(db, 999, "csv", tmp_path / "x.csv", err=err)

    assert status == 1 and "no campaign 999" in err.getvalue()


async def test_importing_a_broken_questionnaire_names_the_line_and_stores_nothing(db, tmp_path):
    path = tmp_path / "mentors.yaml"
    path.write_text(
        "code: mentors\nversion: 1\ntitle: Анкета наставника\nsource: ВРМЦ\naudience: all_teachers\n"
        "preamble: Коллеги!\nquestions:\n  - code: q1\n    number: 1\n    text: Сколько у вас подопечных?\n"
        "    type: single\n    options:\n      - {code: one, text: Один}\n      - {code: one, text: Два}\n",
        encoding="utf-8")
    err = io.StringIO()

    status = await import_questionnaire_cli(db, path, err=err, now=NOW)

    assert status == 1
    assert "mentors.yaml, line 14" in err.getvalue() and "duplicate option code 'one'" in err.getvalue()
    async with db.unit() as uow:
        with pytest.raises(Exception):
            await S.latest_version(uow, "mentors", now=NOW)


async def test_importing_a_questionnaire_versions_it(db, tmp_path):
    path = tmp_path / "mentors.yaml"
    body = ("code: mentors\nversion: 1\ntitle: Анкета наставника\nsource: ВРМЦ\naudience: all_teachers\n"
            "preamble: Коллеги!\nquestions:\n  - code: q1\n    number: 1\n    text: {question}\n    type: text\n")
    path.write_text(body.format(question="Что мешает работе?"), encoding="utf-8")
    out = io.StringIO()

    first = await import_questionnaire_cli(db, path, out=out, now=NOW)
    same = await import_questionnaire_cli(db, path, out=out, now=NOW)
    path.write_text(body.format(question="Что мешает работе с подопечными?"), encoding="utf-8")
    changed = await import_questionnaire_cli(db, path, out=out, now=NOW)
    err = io.StringIO()
    path.write_text(body.format(question="Что мешает?"), encoding="utf-8")
    foreign = await import_questionnaire_cli(db, path, err=err, municipality_code="vsevolozhsky", now=NOW)

    assert (first, same, changed, foreign) == (0, 0, 0, 1)
    assert "belongs to another owner" in err.getvalue()
    assert out.getvalue().splitlines() == [
        "imported mentors as version 1: Анкета наставника",
        "mentors is unchanged: it is already stored as version 1",
        "imported mentors as version 2: Анкета наставника",
    ]

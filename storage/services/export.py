"""Export of a campaign's answers to CSV and XLSX: one row per response, one column per question.

«Другое» texts get a column of their own next to their question; a matrix question gets a
column per row. Answers are written in words (the option texts in the municipality's wording),
the way the coordinator's spreadsheet had them. An anonymous campaign is exported from its
anonymous answers: a row per submission, with the day only and nothing about the person.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from sqlalchemy import select

from dialogs.questionnaires.schema import Question, Questionnaire
from storage.models import Member, Organisation
from storage.models_surveys import SUBMITTED, AnonymousAnswer, SurveyAnswer, SurveyCampaign, SurveyResponse
from storage.services import surveys as survey_service
from storage.services.errors import NotFound
from storage.unit_of_work import UnitOfWork

FORMATS = ("csv", "xlsx")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_DELIMITER = ";"  # what a spreadsheet in the Russian locale expects when it opens a CSV


@dataclass(frozen=True)
class Column:
    """One column: its header and how to read a cell from a response's answers."""

    header: str
    question: str | None = None
    part: str = "value"  # "value", "other" or a matrix row code


@dataclass
class Table:
    """A campaign's answers as a plain table."""

    title: str
    headers: list[str]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ExportFile:
    """A file ready to send or write."""

    name: str
    content: bytes
    media_type: str


def question_columns(questionnaire: Questionnaire) -> list[Column]:
    """Columns of the answers, in question order."""
    columns: list[Column] = []
    for question in questionnaire.questions:
        title = f"{question.number}. {question.text}"
        if question.type == "matrix":
            columns += [Column(f"{title} — {row.text}", question.code, row.code) for row in question.rows]
            continue
        columns.append(Column(title, question.code))
        if question.other_option is not None:
            columns.append(Column(f"{question.number}. {question.other_option.text.rstrip(':')} (свой вариант)",
                                  question.code, "other"))
    return columns


def cell(question: Question, column: Column, answer: survey_service.StoredAnswer | None) -> Any:
    """The value of one cell: option texts, text, year, the «Другое» text or a matrix row's column."""
    if answer is None or answer.value is None:
        return None
    if column.part == "other":
        return answer.other_text
    labels = {option.code: option.text for option in question.options}
    if question.type == "matrix":
        chosen = answer.value.get(column.part)
        return labels.get(chosen, chosen) if chosen else None
    if question.type == "single":
        return labels.get(answer.value, answer.value)
    if question.type == "multi":
        return "; ".join(labels.get(code, code) for code in answer.value)
    return answer.value


def _row(questionnaire: Questionnaire, columns: list[Column], answers: Mapping[str, survey_service.StoredAnswer]) -> list:
    return [cell(questionnaire.question(c.question), c, answers.get(c.question)) for c in columns]


async def campaign_table(uow: UnitOfWork, campaign: SurveyCampaign) -> Table:
    """Every submitted response of a campaign as rows (no access check: callers do it)."""
    version = await survey_service.version_by_id(uow, campaign.version_id)
    municipality = await uow.reference.municipality(campaign.municipality_id)
    questionnaire = survey_service.rendered_for(version, municipality)
    columns = question_columns(questionnaire)
    if version.anonymous:
        return await _anonymous_table(uow, campaign, questionnaire, columns)
    headers = ["№", "Педагог", "Организация", "Отправлено"] + [c.header for c in columns]
    table = Table(questionnaire.title, headers)
    responses = list(
        await uow.session.execute(
            select(SurveyResponse.id, SurveyResponse.submitted_at, Member.full_name, Organisation.name)
            .join(Member, Member.id == SurveyResponse.member_id)
            .outerjoin(Organisation, Organisation.id == Member.organisation_id)
            .where(SurveyResponse.campaign_id == campaign.id, SurveyResponse.status == SUBMITTED)
            .order_by(Organisation.name, Member.full_name, SurveyResponse.id)
        )
    )
    answers: dict[int, dict[str, survey_service.StoredAnswer]] = {}
    rows = await uow.session.execute(
        select(SurveyAnswer.response_id, SurveyAnswer.question_code, SurveyAnswer.value, SurveyAnswer.other_text)
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .where(SurveyResponse.campaign_id == campaign.id, SurveyResponse.status == SUBMITTED)
    )
    for response_id, code, value, other in rows:
        answers.setdefault(response_id, {})[code] = survey_service.StoredAnswer(value, other)
    for number, (response_id, submitted_at, name, organisation) in enumerate(responses, start=1):
        day = survey_service.local_today(municipality, submitted_at) if submitted_at else None
        table.rows.append(
            [number, name, organisation, day] + _row(questionnaire, columns, answers.get(response_id, {}))
        )
    return table


async def _anonymous_table(
    uow: UnitOfWork, campaign: SurveyCampaign, questionnaire: Questionnaire, columns: list[Column]
) -> Table:
    table = Table(questionnaire.title, ["№", "Дата"] + [c.header for c in columns])
    sheets: dict[str, tuple[date, dict[str, survey_service.StoredAnswer]]] = {}
    rows = await uow.session.execute(
        select(AnonymousAnswer.sheet, AnonymousAnswer.day, AnonymousAnswer.question_code, AnonymousAnswer.value,
               AnonymousAnswer.other_text)
        .where(AnonymousAnswer.campaign_id == campaign.id)
        .order_by(AnonymousAnswer.day, AnonymousAnswer.sheet)
    )
    for sheet, day, code, value, other in rows:
        sheets.setdefault(sheet, (day, {}))[1][code] = survey_service.StoredAnswer(value, other)
    for number, (day, answers) in enumerate(sheets.values(), start=1):
        table.rows.append([number, day] + _row(questionnaire, columns, answers))
    return table


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    return str(value)


def to_csv(table: Table) -> bytes:
    """CSV with a BOM and semicolons, so a spreadsheet opens the Cyrillic text as is."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=CSV_DELIMITER, lineterminator="\r\n")
    writer.writerow(table.headers)
    for row in table.rows:
        writer.writerow([_text(value) for value in row])
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx(table: Table) -> bytes:
    """An XLSX workbook: bold wrapped headers, frozen first row, dates as dates."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Ответы"
    sheet.append(table.headers)
    for row in table.rows:
        sheet.append(row)
    for index, _header in enumerate(table.headers, start=1):
        header_cell = sheet.cell(row=1, column=index)
        header_cell.font = Font(bold=True)
        header_cell.alignment = Alignment(wrap_text=True, vertical="top")
        sheet.column_dimensions[get_column_letter(index)].width = 8 if index == 1 else 30
    for row in sheet.iter_rows(min_row=2):
        for value_cell in row:
            if isinstance(value_cell.value, date):
                value_cell.number_format = "DD.MM.YYYY"
    sheet.freeze_panes = "B2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def render_file(table: Table, campaign: SurveyCampaign, code: str, fmt: str) -> ExportFile:
    """The table as a named file in one of FORMATS."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    name = f"campaign_{campaign.id}_{code}_{campaign.opens_on:%Y}.{fmt}"
    if fmt == "csv":
        return ExportFile(name, to_csv(table), "text/csv")
    return ExportFile(name, to_xlsx(table), XLSX_TYPE)


async def export_campaign(uow: UnitOfWork, actor: Member | None, campaign_id: int, fmt: str) -> ExportFile:
    """A campaign's answers as a file; `actor` must coordinate its municipality (None: the command line)."""
    if actor is not None:
        campaign = await survey_service.campaign_for(uow, actor, campaign_id)
    else:
        campaign = await uow.session.get(SurveyCampaign, campaign_id)
        if campaign is None:
            raise NotFound("campaign")
    version = await survey_service.version_by_id(uow, campaign.version_id)
    table = await campaign_table(uow, campaign)
    return render_file(table, campaign, version.code, fmt)


def side_by_side_xlsx(compared: survey_service.SideBySide) -> ExportFile:
    """A teacher's questionnaire answers, a column per campaign (`answers_side_by_side`), as XLSX.
    The file name carries the member's number only, no name."""
    table = Table("Ответы по годам", ["№", "Вопрос", *compared.columns])
    for _code, title, values in compared.rows:
        number, _, text = title.partition(". ")
        table.rows.append([number, text, *values])
    return ExportFile(f"answers_by_year_{compared.member_id}.xlsx", to_xlsx(table), XLSX_TYPE)

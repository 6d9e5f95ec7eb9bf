"""Benchmark of the deficit aggregation on SQLite.

Builds one municipality with 10,000 young teachers who all submitted the young-teacher
questionnaire (about 280,000 answers, each feeding a deficit report) plus 20,000 self-made
deficit reports over half a year, then times the full aggregation (`summarise`: every split,
the weekly trend and the retention signals, with suppression) next to a plain
`SELECT count(*)` over the same rows, measured in the same run.

Run from the repository root::

    .venv/bin/python -m bench.aggregation [--teachers 10000] [--reports 20000] [--seed 20260901]

Exit status is 0 when the aggregation takes less than the target (1 s), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):  # executed as `python bench/aggregation.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine as create_sync_engine  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from storage.db import create_engine, session_factory  # noqa: E402
from storage.models import Member, Municipality, Organisation  # noqa: E402
from storage.models_surveys import (  # noqa: E402
    DeficitItem,
    DeficitReport,
    QuestionnaireVersion,
    SurveyAnswer,
    SurveyCampaign,
    SurveyResponse,
    mask_of,
)
from storage.services import aggregation, surveys  # noqa: E402
from storage.taxonomy import DeficitGroup, Difficulty, HelpDirection, SubjectArea  # noqa: E402
from storage.unit_of_work import Database  # noqa: E402
from storage.bootstrap import prepare_database

TARGET_SECONDS = 1.0
N_SCHOOLS = 40
TODAY = date(2027, 6, 20)
NOW = datetime(2027, 6, 20, 9, 0, tzinfo=timezone.utc)
SUBJECTS = [s.value for s in SubjectArea if s not in (SubjectArea.OTHER,)]
BATCH = 20_000


def _answer(question, rng: random.Random):
    """A random but valid answer (value, «Другое» text) to one question."""
    if question.type == "single":
        option = rng.choice(question.options)
        return option.code, ("свой вариант" if option.other else None)
    if question.type == "multi":
        plain = [o.code for o in question.options if o.code not in question.exclusive]
        if question.exclusive and rng.random() < 0.3:
            return [question.exclusive[0]], None
        chosen = rng.sample(plain, rng.randint(1, min(3, len(plain))))
        codes = [o.code for o in question.options if o.code in chosen]
        other = question.other_option
        return codes, ("свой вариант" if other is not None and other.code in codes else None)
    if question.type == "year":
        return rng.randint(2015, 2026), None
    return f"Ответ {rng.randint(1, 999)}", None


def _insert(connection, table, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        connection.execute(insert(table), rows[start:start + BATCH])


def populate(path: Path, teachers: int, reports: int, seed: int) -> int:
    """Fill the database with synthetic data using Core bulk inserts; returns the municipality id."""
    rng = random.Random(seed)
    questionnaire = surveys.builtin_questionnaires()["young_teacher"]
    groups, difficulties, helps = [g.value for g in DeficitGroup], [d.value for d in Difficulty], [
        h.value for h in HelpDirection]
    engine = create_sync_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        municipality_id = connection.execute(
            select(Municipality.id).where(Municipality.code == "vsevolozhsky")).scalar_one()
        _insert(connection, Organisation.__table__, [
            {"municipality_id": municipality_id, "name": f"Бенчмарк-школа № {i}", "kind": "school"}
            for i in range(1, N_SCHOOLS + 1)])
        schools = list(connection.execute(
            select(Organisation.id).where(Organisation.municipality_id == municipality_id)).scalars())
        body = surveys.body_of(questionnaire)
        version_id = connection.execute(insert(QuestionnaireVersion).values(
            code=questionnaire.code, version=questionnaire.version, checksum=surveys.checksum_of(body),
            title=questionnaire.title, audience=questionnaire.audience, anonymous=False, origin="builtin",
            body=body, created_at=NOW)).inserted_primary_key[0]
        campaign_id = connection.execute(insert(SurveyCampaign).values(
            municipality_id=municipality_id, version_id=version_id, opens_on=date(2027, 5, 1),
            closes_on=date(2027, 6, 30), created_at=NOW)).inserted_primary_key[0]

        first_member = (connection.execute(select(func.max(Member.id))).scalar() or 0) + 1
        members = []
        for i in range(teachers):
            members.append({
                "id": first_member + i, "role": "teacher", "full_name": f"Педагог {i}", "municipality_id": municipality_id,
                "organisation_id": rng.choice(schools), "subject_area": rng.choice(SUBJECTS),
                "teaching_start_year": rng.randint(2024, 2026), "birth_year": rng.randint(1995, 2004),
                "mentor_confirmed": False, "created_at": NOW, "updated_at": NOW, "last_seen_at": NOW,
            })
        _insert(connection, Member.__table__, members)

        responses, answers, report_rows, items = [], [], [], []
        report_id = 0
        for i, member in enumerate(members):
            response_id = i + 1
            submitted = NOW - timedelta(days=rng.randint(0, 45), hours=rng.randint(0, 10))
            responses.append({"id": response_id, "member_id": member["id"], "campaign_id": campaign_id,
                              "version_id": version_id, "status": "submitted", "started_at": submitted,
                              "updated_at": submitted, "submitted_at": submitted})
            given = {}
            for question in questionnaire.questions:
                if question.when is not None and not question.when.is_met(given.get(question.when.question)):
                    continue
                value, other = _answer(question, rng)
                given[question.code] = value
                answers.append({"response_id": response_id, "question_code": question.code, "value": value,
                                "other_text": other, "answered_at": submitted})
            report_id += 1
            fed = [(question.feeds, code) for question in questionnaire.questions
                   if question.feeds and question.code in given for code in given[question.code]]
            report_rows.append({"id": report_id, "member_id": member["id"], "municipality_id": municipality_id,
                                "organisation_id": member["organisation_id"], "subject_area": member["subject_area"],
                                "created_on": submitted.date(), "source": "questionnaire", "mask": mask_of(fed)})
            items += [{"report_id": report_id, "kind": kind, "code": code} for kind, code in fed]
        for _ in range(reports):
            member = rng.choice(members)
            report_id += 1
            ticked = [("deficit_group", c) for c in rng.sample(groups, rng.randint(0, 2))]
            ticked += [("difficulty", c) for c in rng.sample(difficulties, rng.randint(0, 2))]
            ticked += [("help_direction", c) for c in rng.sample(helps, rng.randint(1, 2))]
            report_rows.append({"id": report_id, "member_id": member["id"], "municipality_id": municipality_id,
                                "organisation_id": member["organisation_id"], "subject_area": member["subject_area"],
                                "created_on": TODAY - timedelta(days=rng.randint(0, 180)), "source": "self",
                                "mask": mask_of(ticked)})
            items += [{"report_id": report_id, "kind": kind, "code": code} for kind, code in ticked]
        _insert(connection, SurveyResponse.__table__, responses)
        _insert(connection, SurveyAnswer.__table__, answers)
        _insert(connection, DeficitReport.__table__, report_rows)
        _insert(connection, DeficitItem.__table__, items)
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return municipality_id


async def measure(url: str, municipality_id: int, repeat: int) -> dict[str, float | int]:
    engine = create_engine(url)
    db = Database(session_factory(engine))
    start, end = date(2026, 9, 1), TODAY
    counts = {}

    async def plain_count() -> None:
        async with db.unit() as uow:
            counts["items"] = (await uow.session.execute(
                select(func.count()).select_from(DeficitItem).join(DeficitReport, DeficitReport.id == DeficitItem.report_id)
                .where(DeficitReport.municipality_id == municipality_id, DeficitReport.created_on >= start,
                       DeficitReport.created_on <= end))).scalar_one()
            counts["answers"] = (await uow.session.execute(
                select(func.count()).select_from(SurveyAnswer)
                .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
                .join(SurveyCampaign, SurveyCampaign.id == SurveyResponse.campaign_id)
                .where(SurveyCampaign.municipality_id == municipality_id))).scalar_one()
            counts["reports"] = (await uow.session.execute(
                select(func.count()).select_from(DeficitReport)
                .where(DeficitReport.municipality_id == municipality_id))).scalar_one()

    async def full() -> None:
        async with db.unit() as uow:
            counts["summary"] = await aggregation.summarise(uow, municipality_id, start=start, end=end, weeks=8)

    async def best(work) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await work()
            times.append(time.perf_counter() - t0)
        return min(times)

    await full()  # warm the caches and the connection once
    result = {"count": await best(plain_count), "aggregation": await best(full)}
    await engine.dispose()
    return {**result, **{k: v for k, v in counts.items() if k != "summary"}, "people": counts["summary"].people.count}


async def build(path: Path) -> None:
    database = await prepare_database(f"sqlite+aiosqlite:///{path}")
    await database.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs of each measurement")
    parser.add_argument("--db", help="SQLite file to build (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.db) if args.db else Path(folder) / "bench.sqlite3"
        if path.exists():
            path.unlink()
        t0 = time.perf_counter()
        asyncio.run(build(path))
        municipality_id = populate(path, args.teachers, args.reports, args.seed)
        print(f"setup: {args.teachers} young teachers with submitted questionnaires, {args.reports} self reports "
              f"(built in {time.perf_counter() - t0:.1f} s)")
        figures = asyncio.run(measure(f"sqlite+aiosqlite:///{path}", municipality_id, args.repeat))

    print(f"rows: {figures['answers']} answers, {figures['reports']} deficit reports, "
          f"{figures['items']} deficit items in the period; {figures['people']} people reported")
    print(f"plain SELECT count(*) over the same rows: {figures['count'] * 1000:.1f} ms (best of {args.repeat})")
    print(f"full aggregation (every split, 8-week trend, retention, suppression): "
          f"{figures['aggregation'] * 1000:.1f} ms (best of {args.repeat})")
    ratio = figures["aggregation"] / figures["count"] if figures["count"] else float("inf")
    print(f"ratio aggregation / count(*): {ratio:.1f}")
    ok = figures["aggregation"] < TARGET_SECONDS
    print(f"aggregation under {TARGET_SECONDS:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

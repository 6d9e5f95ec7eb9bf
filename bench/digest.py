"""Benchmark of the weekly digest on SQLite: build, text, chart (PNG) and workbook (XLSX).

Builds one municipality with 10,000 teachers (and 600 mentors) whose young-teacher
questionnaires hold 300,000 answers (each feeding a deficit report), 20,000 self-made deficit
reports, 3,000 mentoring pairs with 5,000 meetings, 500 events over the school year with
registrations and feedback, open requests for a mentor, a running campaign and the
coordinator's denominators; all with Core bulk inserts. Then it times each part of the digest
of one week (best of N runs, after one warm-up run that also pays matplotlib's import) next to
a plain `SELECT count(*)` over the answers, measured in the same run.

Run from the repository root::

    .venv/bin/python -m bench.digest [--teachers 10000] [--answers 300000] [--meetings 5000] [--events 500]

Exit status is 0 when the whole digest (build + text + chart + workbook) takes less than the
target (2 s), 1 otherwise.
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

if __package__ in (None, ""):  # executed as `python bench/digest.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine as create_sync_engine  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench.aggregation import _answer  # noqa: E402
from storage.db import create_engine, session_factory  # noqa: E402
from storage.models import Member, Municipality, Organisation  # noqa: E402
from storage.models_digest import DigestTarget  # noqa: E402
from storage.models_events import Event, EventFeedback, EventType, Registration  # noqa: E402
from storage.models_mentoring import MentorMeeting, MentorPair, MentorProfile, MentorRequest  # noqa: E402
from storage.models_surveys import (  # noqa: E402
    DeficitItem,
    DeficitReport,
    QuestionnaireVersion,
    SurveyAnswer,
    SurveyCampaign,
    SurveyResponse,
    mask_of,
)
from storage.services import digest, surveys  # noqa: E402
from storage.taxonomy import DeficitGroup, Difficulty, HelpDirection, SubjectArea  # noqa: E402
from storage.unit_of_work import Database  # noqa: E402
from storage.bootstrap import prepare_database

TARGET_SECONDS = 2.0
N_SCHOOLS = 40
N_MENTORS = 600
N_PAIRS = 3000
N_REQUESTS = 200
NOW = datetime(2027, 3, 15, 6, 0, tzinfo=timezone.utc)  # Monday 09:00 in Moscow
YEAR, WEEK = 2027, 10  # the last complete week: 8–14 March 2027
SCHOOL_YEAR = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc)
SUBJECTS = [s.value for s in SubjectArea if s not in (SubjectArea.OTHER,)]
BATCH = 20_000
EVENT_TYPES = ["seminar", "young_teacher_school", "smart_holidays", "method_train", "field_seminar", "club",
               "debut", "duet"]


def _insert(connection, table, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        connection.execute(insert(table), rows[start:start + BATCH])


def populate(path: Path, teachers: int, answers_wanted: int, reports: int, meetings: int, events: int,
             seed: int) -> dict[str, int]:
    """Fill the database with synthetic data using Core bulk inserts; returns row counts."""
    rng = random.Random(seed)
    questionnaire = surveys.builtin_questionnaires()["young_teacher"]
    groups, difficulties, helps = ([g.value for g in DeficitGroup], [d.value for d in Difficulty],
                                   [h.value for h in HelpDirection])
    engine = create_sync_engine(f"sqlite:///{path}")
    counts: dict[str, int] = {}
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
            body=body, created_at=SCHOOL_YEAR)).inserted_primary_key[0]
        campaign_id = connection.execute(insert(SurveyCampaign).values(
            municipality_id=municipality_id, version_id=version_id, opens_on=date(2027, 3, 1),
            closes_on=date(2027, 3, 31), created_at=SCHOOL_YEAR)).inserted_primary_key[0]
        # Last spring's campaign: the same annual questionnaire, answered by those already working then.
        last_year_id = connection.execute(insert(SurveyCampaign).values(
            municipality_id=municipality_id, version_id=version_id, opens_on=date(2026, 5, 1),
            closes_on=date(2026, 6, 30), closed_at=datetime(2026, 7, 1, tzinfo=timezone.utc),
            created_at=SCHOOL_YEAR)).inserted_primary_key[0]

        first = (connection.execute(select(func.max(Member.id))).scalar() or 0) + 1
        members = []
        for i in range(teachers):
            created = SCHOOL_YEAR + timedelta(days=rng.randint(0, 194), hours=rng.randint(0, 23))
            members.append({
                "id": first + i, "role": "teacher", "full_name": f"Педагог {i}", "municipality_id": municipality_id,
                "organisation_id": rng.choice(schools), "subject_area": rng.choice(SUBJECTS),
                "teaching_start_year": rng.randint(2022, 2026), "birth_year": rng.randint(1985, 2004),
                "mentor_confirmed": False, "created_at": created, "updated_at": created, "last_seen_at": created,
            })
        mentors = [{
            "id": first + teachers + i, "role": "mentor", "full_name": f"Наставник {i}",
            "municipality_id": municipality_id, "organisation_id": rng.choice(schools),
            "subject_area": rng.choice(SUBJECTS), "teaching_start_year": rng.randint(1990, 2015),
            "birth_year": rng.randint(1960, 1985), "mentor_confirmed": True, "created_at": SCHOOL_YEAR,
            "updated_at": SCHOOL_YEAR, "last_seen_at": SCHOOL_YEAR,
        } for i in range(N_MENTORS)]
        _insert(connection, Member.__table__, members + mentors)
        _insert(connection, MentorProfile.__table__, [
            {"member_id": m["id"], "category": "first", "strengths": rng.sample(groups, 2), "help_directions": [],
             "capacity": 6, "accepts_network": False, "share_link": False, "created_at": SCHOOL_YEAR,
             "updated_at": SCHOOL_YEAR} for m in mentors])

        responses, answers, report_rows, items = [], [], [], []
        report_id = 0
        order = [(member, campaign_id) for member in members]
        rng.shuffle(order)
        earlier = [(member, last_year_id) for member in members if member["teaching_start_year"] <= 2025]
        rng.shuffle(earlier)
        for index, (member, campaign) in enumerate(order + earlier):
            if len(answers) >= answers_wanted:
                break
            submitted = (NOW if campaign == campaign_id else datetime(2026, 6, 15, tzinfo=timezone.utc)) - timedelta(
                days=rng.randint(0, 14), hours=rng.randint(0, 10))
            responses.append({"id": index + 1, "member_id": member["id"], "campaign_id": campaign,
                              "version_id": version_id, "status": "submitted", "started_at": submitted,
                              "updated_at": submitted, "submitted_at": submitted})
            given = {}
            for question in questionnaire.questions:
                if question.when is not None and not question.when.is_met(given.get(question.when.question)):
                    continue
                value, other = _answer(question, rng)
                given[question.code] = value
                answers.append({"response_id": index + 1, "question_code": question.code, "value": value,
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
                                "created_on": (NOW - timedelta(days=rng.randint(0, 180))).date(), "source": "self",
                                "mask": mask_of(ticked)})
            items += [{"report_id": report_id, "kind": kind, "code": code} for kind, code in ticked]
        _insert(connection, SurveyResponse.__table__, responses)
        _insert(connection, SurveyAnswer.__table__, answers)
        _insert(connection, DeficitReport.__table__, report_rows)
        _insert(connection, DeficitItem.__table__, items)
        counts.update(answers=len(answers), responses=len(responses), reports=len(report_rows))

        mentees = rng.sample(members, N_PAIRS + N_REQUESTS)
        pairs = []
        for i, mentee in enumerate(mentees[:N_PAIRS]):
            started = SCHOOL_YEAR + timedelta(days=rng.randint(0, 150))
            ended = started + timedelta(days=rng.randint(30, 90)) if rng.random() < 0.1 else None
            pairs.append({"id": i + 1, "municipality_id": municipality_id, "mentor_id": mentors[i % N_MENTORS]["id"],
                          "mentee_id": mentee["id"], "started_at": started, "ended_at": ended})
        _insert(connection, MentorPair.__table__, pairs)
        meeting_rows = []
        for _ in range(meetings):
            pair = rng.choice(pairs)
            last = min(NOW, pair["ended_at"] or NOW)
            span = max(1, (last - pair["started_at"]).days)
            held = (pair["started_at"] + timedelta(days=rng.randint(0, span - 1))).date()
            meeting_rows.append({"pair_id": pair["id"], "held_on": held, "duration_min": 45, "format": "in_school",
                                 "activity": rng.choice(["consultation", "lesson_visit", "open_lesson", "iom"]),
                                 "deficits": rng.sample(groups, rng.randint(0, 1)),
                                 "confirmed": rng.choice(["yes", "pending", "yes"]), "created_at": NOW,
                                 "updated_at": NOW})
        _insert(connection, MentorMeeting.__table__, meeting_rows)
        _insert(connection, MentorRequest.__table__, [
            {"mentee_id": m["id"], "municipality_id": municipality_id, "deficit_groups": [], "share_link": False,
             "state": "open", "created_at": NOW - timedelta(days=rng.randint(0, 40))}
            for m in mentees[N_PAIRS:]])

        types = dict(connection.execute(select(EventType.code, EventType.id)).all())
        event_rows, registrations, feedback = [], [], []
        registration_id = 0
        for i in range(events):
            starts = SCHOOL_YEAR + timedelta(days=rng.randint(0, 280), hours=rng.randint(2, 10))
            capacity = rng.choice([None, 20, 30, 50])
            code = rng.choice(EVENT_TYPES)
            event_rows.append({"id": i + 1, "municipality_id": municipality_id, "type_id": types[code],
                               "title": f"Мероприятие № {i + 1}", "description": "", "starts_at": starts,
                               "ends_at": starts + timedelta(hours=3), "place": "ВРМЦ", "audience": "both",
                               "capacity": capacity, "deficit_tags": rng.sample(groups, rng.randint(0, 2)),
                               "organiser_contact": "", "status": "active", "version": 1,
                               "created_at": SCHOOL_YEAR, "updated_at": SCHOOL_YEAR})
            people = rng.sample(members + mentors, rng.randint(5, 30))
            past = starts < NOW
            for person in people:
                registration_id += 1
                attended = rng.choice([True, True, False, None]) if past else None
                registrations.append({"id": registration_id, "event_id": i + 1, "member_id": person["id"],
                                      "state": "going", "seat_round": 1, "attended": attended, "created_at": starts,
                                      "state_at": starts})
                if attended and rng.random() < 0.6:
                    feedback.append({"event_id": i + 1, "member_id": person["id"], "deficit_groups": [],
                                     "answers": {q: rng.choice(["positive", "positive", "unsure", "negative"])
                                                 for q in ("content", "organisation", "usefulness", "recommend")},
                                     "created_at": starts})
        _insert(connection, Event.__table__, event_rows)
        _insert(connection, Registration.__table__, registrations)
        _insert(connection, EventFeedback.__table__, feedback)
        _insert(connection, DigestTarget.__table__, [
            {"municipality_id": municipality_id, "kind": "young_teachers_total", "value": 9000,
             "entered_at": SCHOOL_YEAR},
            {"municipality_id": municipality_id, "kind": "teachers_total", "value": 30000, "entered_at": SCHOOL_YEAR}])
        counts.update(meetings=len(meeting_rows), events=len(event_rows), registrations=len(registrations),
                      feedback=len(feedback), pairs=len(pairs))
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    counts["municipality_id"] = municipality_id
    return counts


async def measure(url: str, municipality_id: int, repeat: int) -> dict[str, float]:
    engine = create_engine(url)
    db = Database(session_factory(engine))
    built: dict[str, object] = {}

    async def plain_count() -> None:
        async with db.unit() as uow:
            built["answers"] = (await uow.session.execute(select(func.count()).select_from(SurveyAnswer))).scalar_one()

    async def build() -> None:
        async with db.unit() as uow:
            built["digest"] = await digest.build_digest(uow, municipality_id, YEAR, WEEK, NOW)

    def timed(work) -> float:
        t0 = time.perf_counter()
        work()
        return time.perf_counter() - t0

    async def atimed(work) -> float:
        t0 = time.perf_counter()
        await work()
        return time.perf_counter() - t0

    cold = {"build": await atimed(build)}
    the_digest = built["digest"]
    cold["text"] = timed(lambda: built.__setitem__("text", digest.render_text(the_digest)))
    cold["chart"] = timed(lambda: built.__setitem__("chart", digest.render_chart(the_digest)))
    cold["workbook"] = timed(lambda: built.__setitem__("workbook", digest.render_workbook(the_digest)))
    best = {key: float("inf") for key in ("count", "build", "text", "chart", "workbook", "total")}
    for _ in range(repeat):
        best["count"] = min(best["count"], await atimed(plain_count))
        t0 = time.perf_counter()
        part = await atimed(build)
        best["build"] = min(best["build"], part)
        for name, render in (("text", digest.render_text), ("chart", digest.render_chart),
                             ("workbook", digest.render_workbook)):
            best[name] = min(best[name], timed(lambda render=render: render(built["digest"])))
        best["total"] = min(best["total"], time.perf_counter() - t0)
    await engine.dispose()
    d = built["digest"]
    return {**best, **{f"cold_{k}": v for k, v in cold.items()}, "answers": built["answers"],
            "young": d.headline.young_total, "text_chars": len(built["text"]), "png_bytes": len(built["chart"]),
            "xlsx_bytes": len(built["workbook"])}


async def prepare(path: Path) -> None:
    database = await prepare_database(f"sqlite+aiosqlite:///{path}")
    await database.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, default=10_000)
    parser.add_argument("--answers", type=int, default=300_000)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--meetings", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20260901)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs of each measurement")
    parser.add_argument("--db", help="SQLite file to build (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.db) if args.db else Path(folder) / "bench.sqlite3"
        if path.exists():
            path.unlink()
        t0 = time.perf_counter()
        asyncio.run(prepare(path))
        counts = populate(path, args.teachers, args.answers, args.reports, args.meetings, args.events, args.seed)
        print(f"setup: {args.teachers} teachers + {N_MENTORS} mentors, {counts['answers']} answers in "
              f"{counts['responses']} questionnaires, {counts['reports']} deficit reports, {counts['pairs']} pairs "
              f"with {counts['meetings']} meetings, {counts['events']} events with {counts['registrations']} "
              f"registrations and {counts['feedback']} feedback forms (built in {time.perf_counter() - t0:.1f} s)")
        figures = asyncio.run(measure(f"sqlite+aiosqlite:///{path}", counts["municipality_id"], args.repeat))

    ms = {key: value * 1000 for key, value in figures.items() if isinstance(value, float)}
    print(f"digest of {YEAR}-W{WEEK:02d}: {figures['young']} young teachers; text {figures['text_chars']} chars, "
          f"PNG {figures['png_bytes'] // 1024} KiB, XLSX {figures['xlsx_bytes'] // 1024} KiB")
    print(f"first run (cold: caches, matplotlib import): build {ms['cold_build']:.0f} ms, text "
          f"{ms['cold_text']:.1f} ms, chart {ms['cold_chart']:.0f} ms, workbook {ms['cold_workbook']:.0f} ms")
    print(f"best of {args.repeat}:")
    for name, label in (("build", "build (all queries, aggregation, suppression)"), ("text", "text"),
                        ("chart", "chart (PNG)"), ("workbook", "workbook (XLSX)"), ("total", "total")):
        print(f"  {label:<48} {ms[name]:8.1f} ms")
    print(f"plain SELECT count(*) over {figures['answers']} answers: {ms['count']:.1f} ms")
    ratio = figures["total"] / figures["count"] if figures["count"] else float("inf")
    print(f"ratio digest total / count(*): {ratio:.1f}")
    ok = figures["total"] < TARGET_SECONDS
    print(f"digest under {TARGET_SECONDS:.0f} s: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

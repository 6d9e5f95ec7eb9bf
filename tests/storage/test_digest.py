"""The weekly digest: each section's figures on a hand-built municipality, suppression, scoping,
the friendly digest of a quiet or new municipality, the weekly schedule on a simulated clock,
the workbook holding the text's figures, and the CLI.

The world (Всеволожский район, Europe/Moscow), digest of ISO week 2026-W48 (23–29 November),
built on Monday 30 November:

* young teachers: A — 7 at school 0 (стаж до 1 года), B — 3 at school 1 (от 1 до 2 лет, registered
  during the week), C — 6 at school 2 (от 2 до 3 лет); plus 2 experienced teachers and one aged 46
  (not young under the municipality's rule of 35); mentors M1 (capacity 3) and M2 (capacity 2);
* pairs: M1–A0 (met on 25.11, consultation, confirmed) and M1–A1 (never met, since 10.10), M2–C0
  (since 20.11, met 24.11, open lesson, unconfirmed), M2–C1 (ended on 1.11);
* B0 asks for a mentor since 10.11, B1 since 27.11;
* deficits: this week A (7) methodical and C (6) methodical + psychological; on 10.11 A0–A4 subject;
* events: a seminar on 25.11 (psychological) with A0–A6 going, A6 absent, six answers of feedback;
  a field seminar on 15.10 with M1 and C2; the «Педагогический дебют» on 5.12 (2 places: B0, B1,
  B2 waiting); a methodical seminar on 10.12; an ICT master class in January; a cancelled one;
* a young-teacher campaign since 16.11 answered by A (7) and C0–C2: Q11 «уйду при первой
  возможности» 5, «буду строить карьеру» 5; Q10 «нет» 5, «да» 5;
* denominators: 20 young teachers, 100 teachers.
"""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, insert, select

from bot.commands_digest import digest_cli
from scheduler.jobs_digest import run_digests
from storage.models import Invite, Member, Role
from storage.models_digest import DigestDelivery
from storage.models_events import Event, EventFeedback, EventType, Registration
from storage.models_mentoring import MentorMeeting, MentorPair, MentorProfile, MentorRequest
from storage.models_outbox import OutboxMessage
from storage.models_surveys import SurveyAnswer, SurveyCampaign, SurveyResponse
from storage.services import digest as D
from storage.services import surveys as S
from storage.services.aggregation import Figure
from storage.services.errors import Forbidden

UTC = timezone.utc
NOW = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 10:00 in Moscow
IN_WEEK = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
BEFORE = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


async def muni(uow, code="vsevolozhsky"):
    return await uow.reference.municipality_by_code(code)


async def people(uow, count, *, school, start_year=2026, birth_year=2000, subject="philology", created=BEFORE,
                 role=Role.TEACHER, municipality="vsevolozhsky", name="Тестова Анна"):
    m = await muni(uow, municipality) if municipality else None
    orgs = await uow.reference.organisations(m.id, kind="school") if m else []
    made = []
    for index in range(count):
        member = Member(role=role, full_name=f"{name} {index}", municipality_id=m.id if m else None,
                        organisation_id=orgs[school].id if school is not None else None, subject_area=subject,
                        teaching_start_year=start_year, birth_year=birth_year, mentor_confirmed=role == Role.MENTOR,
                        created_at=created, updated_at=created, last_seen_at=created)
        uow.members.add(member)
        made.append(member)
    await uow.flush()
    return made


async def coordinator(uow, municipality="vsevolozhsky", name="Кузнецова Елена Викторовна", role=Role.COORDINATOR):
    [member] = await people(uow, 1, school=None, role=role, municipality=municipality, name=name,
                            start_year=None, birth_year=None, subject=None)
    return member


async def pair(uow, mentor, mentee, started, ended=None):
    row = MentorPair(municipality_id=mentor.municipality_id, mentor_id=mentor.id, mentee_id=mentee.id,
                     started_at=started, ended_at=ended)
    uow.session.add(row)
    await uow.flush()
    return row


async def meeting(uow, the_pair, held_on, activity, confirmed="pending", deficits=()):
    uow.session.add(MentorMeeting(pair_id=the_pair.id, held_on=held_on, duration_min=45, format="in_school",
                                  activity=activity, deficits=list(deficits), confirmed=confirmed,
                                  created_at=NOW, updated_at=NOW))
    await uow.flush()


async def event(uow, type_code, title, starts, *, hours=2, capacity=None, tags=(), status="active",
                municipality="vsevolozhsky"):
    m = await muni(uow, municipality)
    event_type = (await uow.session.execute(select(EventType).where(EventType.code == type_code))).scalar_one()
    row = Event(municipality_id=m.id, type_id=event_type.id, title=title, starts_at=starts,
                ends_at=starts + timedelta(hours=hours), place="ВРМЦ", audience=event_type.default_audience,
                capacity=capacity, deficit_tags=list(tags), status=status, created_at=BEFORE, updated_at=BEFORE)
    uow.session.add(row)
    await uow.flush()
    return row


async def registration(uow, the_event, member, state="going", attended=None):
    uow.session.add(Registration(event_id=the_event.id, member_id=member.id, state=state, attended=attended,
                                 created_at=BEFORE, state_at=BEFORE))
    await uow.flush()


async def world(uow):
    """The municipality described in the module docstring; returns the people by group."""
    a = await people(uow, 7, school=0, start_year=2026, birth_year=2000, name="Молодова Мария")
    b = await people(uow, 3, school=1, start_year=2025, birth_year=1999, subject="math_it",
                     created=at("2026-11-24", 10), name="Новикова Ольга")
    c = await people(uow, 6, school=2, start_year=2024, birth_year=1995, subject="math_it", name="Цветкова Ирина")
    await people(uow, 2, school=0, start_year=2020, birth_year=1990, name="Опытная Вера")
    await people(uow, 1, school=0, start_year=2026, birth_year=1980, name="Поздняя Нина")
    m1, m2 = [(await people(uow, 1, school=0, start_year=2005, birth_year=1975, role=Role.MENTOR,
                            name=name))[0] for name in ("Наставникова Анна", "Учителева Галина")]
    for mentor, capacity in ((m1, 3), (m2, 2)):
        uow.session.add(MentorProfile(member_id=mentor.id, capacity=capacity, strengths=["methodical"],
                                      help_directions=[], created_at=BEFORE, updated_at=BEFORE))
    p1 = await pair(uow, m1, a[0], at("2026-10-10"))
    await pair(uow, m1, a[1], at("2026-10-10"))
    p3 = await pair(uow, m2, c[0], at("2026-11-20"))
    await pair(uow, m2, c[1], at("2026-09-15"), ended=at("2026-11-01"))
    await meeting(uow, p1, date(2026, 11, 25), "consultation", "yes", ["methodical"])
    await meeting(uow, p1, date(2026, 10, 20), "lesson_visit", "yes")
    await meeting(uow, p3, date(2026, 11, 24), "open_lesson")
    for mentee, created in ((b[0], at("2026-11-10")), (b[1], at("2026-11-27"))):
        uow.session.add(MentorRequest(mentee_id=mentee.id, municipality_id=mentee.municipality_id,
                                      deficit_groups=["subject"], state="open", created_at=created))

    for member in a:
        await S.report_deficits(uow, member, now=IN_WEEK, groups=["methodical"], difficulties=["discipline"],
                                help_directions=["lessons"])
    for member in c:
        await S.report_deficits(uow, member, now=IN_WEEK, groups=["methodical", "psychological"],
                                difficulties=["discipline", "motivation"])
    for member in a[:5]:
        await S.report_deficits(uow, member, now=at("2026-11-10"), groups=["subject"])

    seminar = await event(uow, "seminar", "Семинар о дисциплине на уроке", at("2026-11-25", 12), capacity=20,
                          tags=["psychological"])
    for index, member in enumerate(a):
        await registration(uow, seminar, member, attended=index < 6)
    for index, member in enumerate(a[:6]):
        uow.session.add(EventFeedback(event_id=seminar.id, member_id=member.id, created_at=NOW, answers={
            "content": "positive" if index < 5 else "unsure", "usefulness": "positive"}))
    field = await event(uow, "field_seminar", "Выездной семинар наставников", at("2026-10-15", 8), hours=7)
    await registration(uow, field, m1, attended=True)
    await registration(uow, field, c[2])
    debut = await event(uow, "debut", "Педагогический дебют — 2026", at("2026-12-05", 10), capacity=2)
    await registration(uow, debut, b[0])
    await registration(uow, debut, b[1])
    await registration(uow, debut, b[2], state="waitlist")
    await event(uow, "seminar", "Методический семинар", at("2026-12-10", 12), tags=["methodical"])
    await event(uow, "seminar", "Мастер-класс по цифровым инструментам", at("2027-01-20", 12), tags=["ict"])
    await event(uow, "seminar", "Отменённый семинар", at("2026-12-03", 12), tags=["subject"], status="cancelled")

    m = await muni(uow)
    version = await S.latest_version(uow, "young_teacher", now=BEFORE)
    campaign = SurveyCampaign(municipality_id=m.id, version_id=version.id, opens_on=date(2026, 11, 16),
                              closes_on=date(2026, 12, 15), created_at=BEFORE)
    uow.session.add(campaign)
    await uow.flush()
    for index, member in enumerate(a + c[:3]):
        response_id = (await uow.session.execute(
            insert(SurveyResponse).values(member_id=member.id, campaign_id=campaign.id, version_id=version.id,
                                          status="submitted", started_at=at("2026-11-20"),
                                          updated_at=at("2026-11-20"), submitted_at=at("2026-11-20"))
            .returning(SurveyResponse.id))).scalar_one()
        await uow.session.execute(insert(SurveyAnswer), [
            {"response_id": response_id, "question_code": "q11",
             "value": "leave_asap" if index < 5 else "career", "answered_at": at("2026-11-20")},
            {"response_id": response_id, "question_code": "q10", "value": "no" if index < 5 else "yes",
             "answered_at": at("2026-11-20")},
        ])

    boss = await coordinator(uow)
    await D.set_denominator(uow, boss, kind=D.YOUNG_TOTAL, value=20, now=BEFORE)
    await D.set_denominator(uow, boss, kind=D.TEACHERS_TOTAL, value=100, now=BEFORE)
    return {"a": a, "b": b, "c": c, "m1": m1, "m2": m2, "boss": boss}


@pytest.fixture
async def built(db):
    async with db.unit() as uow:
        w = await world(uow)
        await uow.commit()
    async with db.unit() as uow:
        boss = await uow.members.get(w["boss"].id)
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)
    return digest, w


# ---- the sections -----------------------------------------------------------------------------------


async def test_the_week_is_the_iso_week_in_the_municipalitys_time(built):
    digest, _ = built

    assert (digest.period.start, digest.period.end, digest.period.label) == (
        date(2026, 11, 23), date(2026, 11, 29), "2026-W48")
    assert digest.period.as_of == datetime(2026, 11, 29, 21, 0, tzinfo=UTC)  # Monday 00:00 in Moscow
    assert not digest.period.partial


async def test_headline_counts_young_teachers_by_band_with_a_mentor_and_towards_the_70_percent_target(built):
    digest, _ = built
    h = digest.headline

    assert (h.young_total, h.young_new) == (16, 3)
    assert h.bands == {"lt1": 7, "1to2": 3, "2to3": 6}
    assert (h.with_mentor, h.mentors) == (3, 2)
    assert h.mentor_share == pytest.approx(3 / 16)
    # involved: pairs this school year A0, A1, C0, C1; came to an event A0–A5, C2 → 9 of the 16
    assert (h.involved, h.involved_base, h.denominator) == (9, 16, 20)
    assert h.coverage == pytest.approx(0.45)


async def test_deficits_of_the_week_the_top_lists_the_trend_and_the_splits(built):
    digest, _ = built
    d = digest.deficits

    assert d.week_people == Figure(13)
    assert [(r.code, r.figure.count) for r in d.week_groups] == [("methodical", 13), ("psychological", 6)]
    assert d.window_people == Figure(13)
    assert [(r.code, r.figure.count) for r in d.window_groups] == [
        ("methodical", 13), ("psychological", 6), ("subject", 5)]
    assert [(r.code, r.figure.count) for r in d.difficulties] == [("discipline", 13), ("motivation", 6)]
    assert [(r.code, r.figure.count) for r in d.help_directions] == [("lessons", 7)]
    assert [(w.start, w.people.count) for w in d.trend] == [
        (date(2026, 11, 2), 0), (date(2026, 11, 9), 5), (date(2026, 11, 16), 0), (date(2026, 11, 23), 13)]
    assert [(row.respondents.count, row.groups["subject"].count, row.groups["psychological"].count)
            for row in d.by_school] == [(7, 5, 0), (6, 0, 6)]
    assert {row.name: row.respondents.count for row in d.by_subject} == {
        "Филология": 7, "Математика и информатика": 6}


async def test_each_frequent_deficit_is_matched_with_upcoming_events_and_uncovered_ones_are_flagged(built):
    digest, _ = built

    assert [(row.group, row.people.count, row.events) for row in digest.coverage] == [
        ("methodical", 13, ["Методический семинар"]),
        ("psychological", 6, []),  # the seminar on 25.11 is over
        ("subject", 5, []),  # the only event tagged «subject» was cancelled
    ]
    text = D.render_text(digest)
    assert "✅ Методические (13): «Методический семинар»" in text
    assert "❗ Психолого-педагогические (6): нет предстоящих мероприятий" in text


async def test_mentoring_meetings_idle_pairs_waiting_mentees_and_mentor_load(built):
    digest, w = built
    m = digest.mentoring

    assert (m.meetings, m.meetings_confirmed, m.activities) == (2, 1, {"consultation": 1, "open_lesson": 1})
    assert (m.active_pairs, m.pairs_met_30) == (3, 2)
    assert [(row.mentor, row.mentee, row.days) for row in m.idle] == [("Наставникова Анна 0", "Молодова Мария 1", 51)]
    assert m.idle_long == 1
    assert [(row.mentee, row.days) for row in m.waiting] == [("Новикова Ольга 0", 20), ("Новикова Ольга 1", 3)]
    assert m.waiting_long == 1
    assert (m.mentors_active, m.load, m.load_max, m.load_avg, m.free_places) == (2, {1: 1, 2: 1}, 2, 1.5, 2)


async def test_events_seats_attendance_feedback_and_the_field_seminar_checklist(built):
    digest, _ = built
    e = digest.events

    assert [(x.title, x.going, x.waitlist, x.capacity) for x in e.upcoming] == [
        ("Педагогический дебют — 2026", 2, 1, 2), ("Методический семинар", 0, 0, None)]
    [past] = e.past
    assert (past.title, past.going, past.attended, past.absent, past.unknown) == (
        "Семинар о дисциплине на уроке", 7, 6, 1, 0)
    assert past.respondents == Figure(6)
    # content: 5 positive and 1 unsure — the 1 is hidden, and so is the 5 it could be computed from
    assert past.positive["content"] == Figure(None)
    assert past.positive["usefulness"] == Figure(6, 1.0)
    assert (e.year_held, e.year_attendees, e.field_event, e.year_for_young) == (2, 8, True, 5)


async def test_the_running_campaign_shows_the_response_rate_by_school(built):
    digest, _ = built
    [campaign] = digest.surveys

    assert (campaign.cohort, campaign.submitted) == (16, 10)
    # the least answered school first
    assert [(s.cohort, s.submitted) for s in campaign.schools] == [(3, 0), (6, 3), (7, 7)]
    assert campaign.schools[0].name == "МОБУ «Гимназия № 4», Мурино"


async def test_retention_signals_are_aggregated_since_the_school_year_began(built):
    digest, _ = built
    r = digest.retention

    assert r.start == date(2026, 9, 1)
    assert (r.q11_respondents, r.leave_asap, r.may_leave) == (Figure(10), Figure(5, 0.5), Figure(0, 0.0))
    assert (r.q10_respondents, r.dissatisfied) == (Figure(10), Figure(5, 0.5))


async def test_the_indicator_tracker_quotes_the_sources_and_computes_each_status(built):
    digest, _ = built
    by_code = {i.code: i for i in digest.indicators}

    assert by_code["vsev_l382"].quote.startswith("Не менее 70 % педагогических работников в возрасте до 35 лет")
    assert (by_code["vsev_l382"].value, by_code["vsev_l382"].status) == ("45% (9 из 20)", D.BELOW)
    assert by_code["lo_11"].quote.startswith("Проведение не менее одного обучающего выездного мероприятия")
    assert (by_code["lo_11"].value, by_code["lo_11"].status) == ("да", D.OK)
    assert by_code["kir_6"].quote == ("Доля молодых специалистов, участвовавших в конкурсах к общему числу "
                                      "молодых специалистов")
    assert by_code["kir_6"].value.endswith("(2 из 16)")
    assert (by_code["kir_5"].status, by_code["kir_5"].value) == (
        D.BELOW, "не закрыты: Психолого-педагогические, Предметные")
    assert (by_code["vsev_l206"].value, by_code["vsev_l206"].status) == ("10% (10 из 100)", D.BELOW)
    assert (by_code["chel_2_4"].value, by_code["chel_2_4"].status) == ("7 против 3", D.OK)
    assert by_code["nov_oo_4"].value == "33% (1 из 3)"
    assert by_code["kir_l260"].value == "13"
    assert by_code["kir_l165"].value == "16% (16 из 100)"
    assert by_code["kir_7"].status == D.LATER and by_code["consult"].status == D.LATER
    assert by_code["community"].status == D.BELOW  # no wall post through the bot in this data
    assert all(i.threshold and i.formula for i in digest.indicators)


async def test_the_community_indicator_counts_the_days_since_the_last_wall_post_made_through_the_bot(db):
    def wall(key, author, sent_at, state="sent"):
        return OutboxMessage(key=f"event:{key}:wall", kind="wall", member_id=author.id, text="Анонс",
                             due_at=sent_at or NOW, state=state, sent_at=sent_at)

    async def community():
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)
        indicator = {i.code: i for i in digest.indicators}["community"]
        return indicator.value, indicator.status

    async with db.unit() as uow:
        boss = await coordinator(uow)
        other = await coordinator(uow, municipality="kopeysk", name="Орлова Нина Петровна")
        nothing = await community()
        uow.session.add(wall("old", boss, datetime(2026, 11, 10, 9, 0, tzinfo=UTC)))
        await uow.flush()
        stale = await community()
        uow.session.add_all([
            wall("recent", boss, datetime(2026, 11, 25, 9, 0, tzinfo=UTC)),
            wall("elsewhere", other, datetime(2026, 11, 28, 9, 0, tzinfo=UTC)),  # another municipality's
            wall("queued", boss, None, state="pending"),  # not published yet
            wall("next_week", boss, NOW),  # after the digest's week
        ])
        await uow.flush()
        fresh = await community()

    assert nothing == ("публикаций через бот не было", D.BELOW)
    assert stale == ("последняя 10.11.2026 (19 дн. назад)", D.BELOW)
    assert fresh == ("последняя 25.11.2026 (4 дн. назад)", D.OK)


async def test_a_missing_denominator_asks_for_input_instead_of_a_share(db):
    async with db.unit() as uow:
        await people(uow, 6, school=0)
        boss = await coordinator(uow)
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)

    by_code = {i.code: i for i in digest.indicators}
    assert by_code["vsev_l382"].status == D.INPUT and by_code["vsev_l382"].needs == D.YOUNG_TOTAL
    assert by_code["kir_l165"].status == D.INPUT
    assert any("Целевые показатели" in step for step in digest.next_steps)


# ---- text and workbook ------------------------------------------------------------------------------


async def test_the_text_is_short_plain_and_names_only_who_the_coordinator_must_act_on(built):
    digest, w = built

    text = D.render_text(digest)

    assert len(text) <= 4096
    assert text.startswith("🗞 Дайджест: Всеволожский район\nНеделя 48 (23 ноября – 29 ноября 2026)")
    assert "Зарегистрировано: 16 (новых за неделю: 3)" in text
    assert "С наставником: 3 из 16 (19%)" in text
    assert "Цель «не менее 70 % до 35 лет вовлечены»: 45% (9 из 20) ⚠️" in text
    assert "• Наставникова Анна 0 — Молодова Мария 1: 51 дн." in text
    assert "• Новикова Ольга 0, МОБУ «Гимназия № 4», Мурино: 20 дн." in text
    assert "Прошло 25.11 «Семинар о дисциплине на уроке»: пришли 6 из 7; отзывов 6" in text
    assert "Уйдут при первой возможности: 5 (50%)" in text
    assert "<" not in text.replace("(<5)", "")  # no markup
    # people who only reported deficits or answered the questionnaire are never named
    assert "Цветкова Ирина" not in text and "Молодова Мария 0" not in text


async def test_the_workbook_opens_and_holds_the_same_figures_as_the_text(built):
    digest, _ = built
    text = D.render_text(digest)

    book = load_workbook(io.BytesIO(D.render_workbook(digest)))

    def rows(sheet):
        return [[cell for cell in row] for row in book[sheet].iter_rows(values_only=True)]

    main = {row[0]: row[1] for row in rows("Главное")[2:]}
    assert main["Молодые педагоги, зарегистрировано"] == 16 and "Зарегистрировано: 16" in text
    assert main["Новых за неделю"] == 3 and "новых за неделю: 3" in text
    assert main["Молодых педагогов с наставником"] == 3
    mentoring = {row[0]: row[1] for row in rows("Наставничество")[2:]}
    assert mentoring["Встреч за неделю"] == 2 and "Встреч за неделю: 2" in text
    assert mentoring["Активных пар"] == 3 and "активных пар: 3" in text
    assert rows("Пары без встреч")[2] == ["Наставникова Анна 0", "Молодова Мария 1", "10.10.2026", 51]
    deficits = {row[0]: row[2:] for row in rows("Дефициты")[2:]}
    assert deficits["Группа: Методические"] == [13, 13]
    assert deficits["Группа: Предметные"] == [0, 5]
    past = rows("Прошли")[2]
    assert past[1:7] == ["Семинар о дисциплине на уроке", 7, 6, 1, 0, 6]
    assert past[7] == "скрыто"  # the content share, suppressed as in the text
    indicators = {row[0]: row[4] for row in rows("Показатели")[2:]}
    assert indicators["ВСЕВ 2022, L382"] == "45% (9 из 20)"
    assert set(book.sheetnames) >= {"Главное", "Дефициты", "Покрытие", "Наставничество", "Мероприятия",
                                    "Анкетирование", "Удержание", "Показатели", "Что сделать"}


async def test_the_chart_is_a_png(built):
    digest, _ = built

    png = D.render_chart(digest)

    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


async def test_long_lists_are_cut_to_fit_a_telegram_message(db):
    async with db.unit() as uow:
        waiting = await people(uow, 60, school=3, name="Ожидающая Длиннофамильная-Двойная Александра")
        for member in waiting:
            uow.session.add(MentorRequest(mentee_id=member.id, municipality_id=member.municipality_id,
                                          deficit_groups=[], state="open", created_at=at("2026-11-01")))
        for index in range(40):
            await event(uow, "seminar", f"Очень длинное название семинара номер {index} для молодых педагогов",
                        at("2026-12-01", 8) + timedelta(hours=index * 5))
        for member in waiting:
            await S.report_deficits(uow, member, now=IN_WEEK, groups=["methodical"])
        boss = await coordinator(uow)
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)

    text = D.render_text(digest)

    assert len(text) <= 4096
    assert "• и ещё 55 — в файле" in text
    assert len(D.render_text(digest, limit=800)) <= 800


# ---- suppression ---------------------------------------------------------------------------------------


async def test_small_cells_are_hidden_in_the_text_the_workbook_and_wherever_they_could_be_subtracted(db):
    async with db.unit() as uow:
        big = await people(uow, 6, school=0, name="Большая Школа")
        small = await people(uow, 2, school=1, name="Малая Школа")
        for member in big + small:
            await S.report_deficits(uow, member, now=IN_WEEK, groups=["methodical"])
        for member in small:
            await S.report_deficits(uow, member, now=IN_WEEK, groups=["communicative"])
        boss = await coordinator(uow)
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)

    d = digest.deficits
    assert d.week_people == Figure(8)
    groups = {r.code: r.figure for r in d.week_groups}
    assert groups["methodical"] == Figure(8) and groups["communicative"] == Figure(None)
    # school 1 has 2 people: hidden, and school 0's 6 too (8 − 6 would give the 2 away)
    assert [row.respondents for row in d.by_school] == [Figure(None), Figure(None)]
    text = D.render_text(digest)
    assert "коммуникативные скрыто" in text and "Малая Школа" not in text
    assert "Больше всего сообщений" not in text
    book = load_workbook(io.BytesIO(D.render_workbook(digest)))
    schools = [row[1] for row in book["По школам"].iter_rows(min_row=3, values_only=True)]
    assert schools == ["скрыто (<5)", "скрыто (<5)"]


# ---- scoping -----------------------------------------------------------------------------------------


async def test_a_coordinator_of_another_municipality_or_a_teacher_is_refused(db):
    async with db.unit() as uow:
        [teacher] = await people(uow, 1, school=0)
        stranger = await coordinator(uow, municipality="novotroitsk")

        with pytest.raises(Forbidden):
            await D.digest_for(uow, stranger, year=2026, week=48, now=NOW, municipality_id=teacher.municipality_id)
        with pytest.raises(Forbidden):
            await D.digest_for(uow, teacher, year=2026, week=48, now=NOW)
        with pytest.raises(Forbidden):
            await D.set_denominator(uow, stranger, kind=D.YOUNG_TOTAL, value=10, now=NOW,
                                    municipality_id=teacher.municipality_id)


async def test_a_regional_coordinator_compares_the_municipalities_of_their_own_region_only(db):
    async with db.unit() as uow:
        await people(uow, 6, school=0)
        await people(uow, 5, school=0, municipality="kirovsky-lo")
        regional = await coordinator(uow, municipality=None, role=Role.REGIONAL, name="Региональная Ирина")
        uow.session.add(Invite(code_hash="x" * 64, role=Role.REGIONAL, region="Ленинградская область",
                               created_at=BEFORE, expires_at=NOW, used_at=BEFORE, used_by=regional.id))
        await uow.flush()

        digest = await D.regional_digest_for(uow, regional, year=2026, week=48, now=NOW)
        with pytest.raises(Forbidden):
            await D.regional_digest_for(uow, regional, year=2026, week=48, now=NOW, region="Оренбургская область")

    assert [(row.name, row.young_total) for row in digest.rows] == [
        ("Всеволожский район", 6), ("Кировский район Ленинградской области", 5)]
    text = D.render_text(digest)
    assert text.startswith("🗞 Региональный дайджест: Ленинградская область") and len(text) <= 4096
    book = load_workbook(io.BytesIO(D.render_workbook(digest)))
    assert [row[:2] for row in book["Сравнение"].iter_rows(min_row=3, values_only=True)] == [
        ("Всеволожский район", 6), ("Кировский район Ленинградской области", 5)]


# ---- quiet and new ---------------------------------------------------------------------------------------


async def test_a_new_municipality_gets_a_short_friendly_digest_with_next_steps(db):
    async with db.unit() as uow:
        boss = await coordinator(uow, municipality="kirovsky-spb")
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)

    text = D.render_text(digest)

    assert digest.new
    assert "Пригласите молодых педагогов" in text and "Добавьте мероприятия" in text
    assert "⚠️ Дефициты" not in text and "📋 Показатели" not in text
    assert len(text) < 1000


async def test_a_quiet_week_says_so_and_what_to_do_instead_of_empty_tables(db):
    async with db.unit() as uow:
        await people(uow, 6, school=0)
        boss = await coordinator(uow)
        digest = await D.digest_for(uow, boss, year=2026, week=48, now=NOW)

    text = D.render_text(digest)

    assert digest.quiet and not digest.new
    assert "Тихая неделя" in text and "Добавьте мероприятия" in text
    assert "⚠️ Дефициты" not in text and "Встреч за неделю" not in text


async def test_the_running_week_is_a_partial_week_up_to_now(db):
    async with db.unit() as uow:
        boss = await coordinator(uow)
        digest = await D.digest_for(uow, boss, year=2026, week=49, now=NOW)
        with pytest.raises(ValueError):
            await D.digest_for(uow, boss, year=2026, week=50, now=NOW)

    assert digest.period.partial and digest.period.as_of == NOW and digest.period.last_day == date(2026, 11, 30)


# ---- the weekly schedule -----------------------------------------------------------------------------------


async def outbox_rows(db):
    async with db.unit() as uow:
        return list((await uow.session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_digests_are_due_on_monday_at_nine_local_time_in_each_timezone_once_a_week(db):
    async with db.unit() as uow:
        moscow = await coordinator(uow)  # Europe/Moscow, UTC+3
        urals = await coordinator(uow, municipality="novotroitsk", name="Уральская Ольга")  # UTC+5
        await uow.commit()
    monday = datetime(2026, 11, 30, tzinfo=UTC)

    assert await run_digests(db, monday + timedelta(hours=3, minutes=59)) == 0  # 08:59 in the Urals
    assert await run_digests(db, monday + timedelta(hours=4)) == 1  # 09:00 in the Urals, 07:00 in Moscow
    assert await run_digests(db, monday + timedelta(hours=5, minutes=59)) == 0
    assert await run_digests(db, monday + timedelta(hours=6)) == 1  # 09:00 in Moscow
    assert await run_digests(db, monday + timedelta(hours=6)) == 0  # run twice (or after a restart)
    assert await run_digests(db, monday + timedelta(days=3)) == 0  # later that week
    assert await run_digests(db, monday + timedelta(days=7, hours=6)) == 2  # next Monday: next week

    rows = await outbox_rows(db)
    assert [row.key for row in rows[:3]] == [f"digest:{urals.id}:2026-W48:{part}" for part in
                                             ("text", "chart", "workbook")]
    assert rows[0].text.startswith("🗞 Дайджест: Новотроицк\nНеделя 48")
    assert (rows[1].attachment["kind"], rows[1].attachment["name"]) == ("photo", "digest-2026-W48.png")
    assert (rows[2].attachment["kind"], rows[2].attachment["name"]) == ("document", "digest-2026-W48.xlsx")
    assert {row.member_id for row in rows[3:6]} == {moscow.id}
    assert len(rows) == 12
    async with db.unit() as uow:
        weeks = (await uow.session.execute(
            select(DigestDelivery.member_id, DigestDelivery.week).order_by(DigestDelivery.id))).all()
    assert weeks[:2] == [(urals.id, "2026-W48"), (moscow.id, "2026-W48")]
    assert set(weeks[2:]) == {(urals.id, "2026-W49"), (moscow.id, "2026-W49")}


async def test_the_send_day_and_hour_are_configurable(db):
    async with db.unit() as uow:
        await coordinator(uow)
        await uow.commit()
    friday = datetime(2026, 12, 4, tzinfo=UTC)

    assert await run_digests(db, friday + timedelta(hours=11, minutes=59), weekday=4, hour=15) == 0
    assert await run_digests(db, friday + timedelta(hours=12), weekday=4, hour=15) == 1


async def test_a_regional_coordinator_gets_the_regional_digest_once_a_week(db):
    async with db.unit() as uow:
        regional = await coordinator(uow, municipality=None, role=Role.REGIONAL, name="Региональная Ирина")
        uow.session.add(Invite(code_hash="y" * 64, role=Role.REGIONAL, region="Ленинградская область",
                               created_at=BEFORE, expires_at=NOW, used_at=BEFORE, used_by=regional.id))
        await uow.commit()
    nine_in_moscow = datetime(2026, 11, 30, 6, tzinfo=UTC)

    assert await run_digests(db, nine_in_moscow) == 1
    assert await run_digests(db, nine_in_moscow + timedelta(hours=1)) == 0

    rows = await outbox_rows(db)
    assert [row.key for row in rows] == [f"digest:{regional.id}:2026-W48:{part}" for part in
                                         ("text", "chart", "workbook")]
    assert rows[0].text.startswith("🗞 Региональный дайджест: Ленинградская область")


async def test_due_week_is_none_before_the_send_moment_and_the_last_complete_week_after():
    monday_morning = datetime(2026, 11, 30, 5, 59, tzinfo=UTC)  # 08:59 in Moscow
    sunday_night = datetime(2026, 11, 29, 20, 59, tzinfo=UTC)  # 23:59 in Moscow

    assert D.due_week(monday_morning, "Europe/Moscow") is None
    assert D.due_week(sunday_night, "Europe/Moscow") == (2026, 47)  # still the week before's, if not yet sent
    assert D.due_week(datetime(2026, 11, 30, 6, tzinfo=UTC), "Europe/Moscow") == (2026, 48)
    assert D.due_week(datetime(2027, 1, 4, 6, tzinfo=UTC), "Europe/Moscow") == (2026, 53)


def test_weeks_parse_in_iso_form_only():
    assert D.parse_week("2026-W48") == (2026, 48)
    assert D.parse_week("2026W5") == (2026, 5)
    assert D.week_label(2026, 5) == "2026-W05"
    for bad in ("2026-48", "W48", "2025-W53"):
        with pytest.raises(ValueError):
            D.parse_week(bad)


# ---- the command line ---------------------------------------------------------------------------------------


async def test_the_cli_writes_the_text_the_chart_and_the_workbook(db, tmp_path: Path):
    async with db.unit() as uow:
        await people(uow, 6, school=0)
        await uow.commit()
    out, err = io.StringIO(), io.StringIO()

    status = await digest_cli(db, out_dir=tmp_path / "out", municipality_code="vsevolozhsky", week="2026-W48",
                              now=NOW, out=out, err=err)

    assert status == 0, err.getvalue()
    folder = tmp_path / "out"
    assert (folder / "digest.txt").read_text(encoding="utf-8").startswith("🗞 Дайджест: Всеволожский район")
    assert (folder / "digest.png").read_bytes().startswith(b"\x89PNG")
    assert load_workbook(folder / "digest.xlsx")["Главное"]["B3"].value == 6
    assert await digest_cli(db, out_dir=tmp_path, municipality_code="nowhere", now=NOW, out=out, err=err) == 1
    assert await digest_cli(db, out_dir=tmp_path, municipality_code="vsevolozhsky", week="2026-48", now=NOW,
                            out=out, err=err) == 1


async def test_nothing_is_counted_twice_across_runs_even_with_many_coordinators(db):
    async with db.unit() as uow:
        for index in range(3):
            await coordinator(uow, name=f"Координатор {index}")
        await uow.commit()
    nine = datetime(2026, 11, 30, 6, tzinfo=UTC)

    first = await run_digests(db, nine)
    second = await run_digests(db, nine + timedelta(minutes=5))

    async with db.unit() as uow:
        count = (await uow.session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
    assert (first, second, count) == (3, 0, 9)

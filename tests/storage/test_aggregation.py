"""The deficit aggregation: counts of people, shares, splits, trend, retention, and suppression.

Every expected figure below is worked out by hand from the data the test creates.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert

from storage.models import Member, Role
from storage.models_surveys import SurveyAnswer, SurveyResponse
from storage.services import aggregation as A
from storage.services import surveys as S
from storage.services.errors import Forbidden

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
START, END = date(2026, 11, 1), date(2026, 11, 26)


async def people(uow, count, *, school, subject="philology", municipality="vsevolozhsky", role=Role.TEACHER):
    muni = await uow.reference.municipality_by_code(municipality)
    orgs = await uow.reference.organisations(muni.id, kind="school")
    made = []
    for index in range(count):
        member = Member(role=role, full_name=f"Тестова Анна {index}", municipality_id=muni.id,
                        organisation_id=orgs[school].id, subject_area=subject, teaching_start_year=2025,
                        birth_year=2000, mentor_confirmed=False, created_at=NOW, updated_at=NOW, last_seen_at=NOW)
        uow.members.add(member)
        made.append(member)
    await uow.flush()
    return made


async def report(uow, members, *, groups=(), difficulties=(), helps=(), when=NOW):
    for member in members:
        await S.report_deficits(uow, member, now=when, groups=groups, difficulties=difficulties, help_directions=helps)


# ---- the suppression rule on its own --------------------------------------------------------------


def test_a_figure_about_one_to_four_people_is_hidden_and_zero_or_five_are_not():
    counts = {("a",): 0, ("b",): 1, ("c",): 4, ("d",): 5}

    assert A.suppress(counts, []) == {("b",), ("c",)}


def test_a_hidden_part_takes_the_smallest_other_part_with_it():
    # total 20 = 9 + 3 + 8: the 3 alone could be worked out as 20 − 9 − 8, so the 8 goes too
    counts = {("t",): 20, ("a",): 9, ("b",): 3, ("c",): 8}

    hidden = A.suppress(counts, [(("t",), [("a",), ("b",), ("c",)])])

    assert hidden == {("b",), ("c",)}


def test_hiding_spreads_through_relations_that_share_a_cell():
    # t1 = x + y and t2 = y + z share y: x (2) is hidden, so y (6) goes too; then t2 = y + z has
    # only y hidden and z (7) must go as well.
    counts = {("t1",): 8, ("x",): 2, ("y",): 6, ("t2",): 13, ("z",): 7}

    hidden = A.suppress(counts, [(("t1",), [("x",), ("y",)]), (("t2",), [("y",), ("z",)])])

    assert hidden == {("x",), ("y",), ("z",)}


def test_zero_parts_are_passed_over_when_choosing_what_else_to_hide():
    # 9 = 5 + 4 + 0: an empty cell is a poor cover (it is often known to be empty), so the 5 goes
    counts = {("t",): 9, ("a",): 5, ("b",): 4, ("c",): 0}

    assert A.suppress(counts, [(("t",), [("a",), ("b",), ("c",)])]) == {("a",), ("b",)}


def test_a_small_total_and_its_only_part_are_both_hidden_and_nothing_more():
    counts = {("t",): 3, ("a",): 3, ("b",): 0, ("c",): 0}

    assert A.suppress(counts, [(("t",), [("a",), ("b",), ("c",)])]) == {("t",), ("a",)}


# ---- the summary on real storage ------------------------------------------------------------------


async def scenario(uow):
    """School A (philology): 7 methodical, 2 of them also subject; B (math): 3 methodical;
    C (math): 6 methodical and subject. So methodical 16 = 7 + 3 + 6 and subject 8 = 2 + 0 + 6."""
    a = await people(uow, 7, school=0, subject="philology")
    b = await people(uow, 3, school=1, subject="math_it")
    c = await people(uow, 6, school=2, subject="math_it")
    await report(uow, a[:2], groups=["methodical", "subject"])
    await report(uow, a[2:], groups=["methodical"])
    await report(uow, b, groups=["methodical"])
    await report(uow, c, groups=["methodical", "subject"])
    return a, b, c


async def test_counts_and_shares_by_group_school_and_subject_with_small_cells_hidden(db):
    async with db.unit() as uow:
        a, b, c = await scenario(uow)
        school = {name: m[0].organisation_id for name, m in (("A", a), ("B", b), ("C", c))}

        summary = await A.summarise(uow, a[0].municipality_id, start=START, end=END, weeks=0)

    groups = summary.kinds["deficit_group"]
    assert summary.people == A.Figure(16)
    assert groups.overall.respondents == A.Figure(16)
    assert groups.overall.codes["methodical"] == A.Figure(16, 1.0)
    assert groups.overall.codes["subject"] == A.Figure(8, 0.5)
    assert groups.overall.codes["ict"] == A.Figure(0, 0.0)
    # methodical by school: B = 3 is hidden; alone it would be 16 − 7 − 6, so C (6, smaller than 7) goes too
    assert [groups.by_school[school[s]].codes["methodical"] for s in "ABC"] == [
        A.Figure(7, 1.0), A.Figure(None), A.Figure(None)]
    # subject by school: A = 2 is hidden, B = 0 stays, C = 6 goes with A
    assert [groups.by_school[school[s]].codes["subject"] for s in "ABC"] == [
        A.Figure(None), A.Figure(0, None), A.Figure(None)]
    # respondents by school: 16 = 7 + 3 + 6, same pattern
    assert [groups.by_school[school[s]].respondents for s in "ABC"] == [A.Figure(7), A.Figure(None), A.Figure(None)]
    # by subject: philology 7 methodical / 2 subject (hidden), math 9 / 6 (hidden with the 2: 8 = 2 + 6)
    assert groups.by_subject["philology"].codes["methodical"] == A.Figure(7, 1.0)
    assert groups.by_subject["math_it"].codes["methodical"] == A.Figure(9, 1.0)
    assert groups.by_subject["philology"].codes["subject"] == A.Figure(None)
    assert groups.by_subject["math_it"].codes["subject"] == A.Figure(None)


async def test_a_teacher_reporting_twice_counts_once_and_other_places_and_days_do_not_count(db):
    async with db.unit() as uow:
        mine = await people(uow, 5, school=0)
        elsewhere = await people(uow, 5, school=0, municipality="novotroitsk")
        await report(uow, mine, groups=["ict"])
        await report(uow, mine, groups=["ict"], difficulties=["time"], when=NOW - timedelta(days=3))
        await report(uow, elsewhere, groups=["ict"])
        await report(uow, mine, groups=["ict"], when=datetime(2026, 10, 20, 9, 0, tzinfo=timezone.utc))

        summary = await A.summarise(uow, mine[0].municipality_id, start=START, end=END, weeks=0)

    assert summary.people == A.Figure(5)
    assert summary.kinds["deficit_group"].overall.codes["ict"] == A.Figure(5, 1.0)
    assert summary.kinds["difficulty"].overall.codes["time"] == A.Figure(5, 1.0)
    assert summary.kinds["help_direction"].overall.respondents == A.Figure(0)


async def test_the_weekly_trend_hides_small_weeks_and_one_more_when_weeks_add_up_to_the_period(db):
    start = date(2026, 11, 2)  # a Monday: four whole weeks up to Sunday 29 November
    end = date(2026, 11, 29)
    async with db.unit() as uow:
        batches = [await people(uow, n, school=0) for n in (6, 2, 5, 7)]
        for week, members in enumerate(batches):
            await report(uow, members, groups=["methodical"],
                         when=datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc) + timedelta(weeks=week))

        summary = await A.summarise(uow, batches[0][0].municipality_id, start=start, end=end, weeks=4)

    assert [week.start for week in summary.trend] == [date(2026, 11, d) for d in (2, 9, 16, 23)]
    # 20 = 6 + 2 + 5 + 7: the 2 is hidden and the 5 with it
    assert [week.people.count for week in summary.trend] == [6, None, None, 7]
    assert [week.codes["deficit_group"]["methodical"].count for week in summary.trend] == [6, None, None, 7]
    assert summary.people == A.Figure(20)


async def test_a_period_of_the_last_weeks_of_a_longer_trend_protects_its_small_week(db):
    async with db.unit() as uow:
        batches = [await people(uow, n, school=0) for n in (9, 6, 2)]
        for week, members in enumerate(batches):
            await report(uow, members, groups=["methodical"],
                         when=datetime(2026, 11, 10, 9, 0, tzinfo=timezone.utc) + timedelta(weeks=week))

        summary = await A.summarise(uow, batches[0][0].municipality_id, start=date(2026, 11, 16),
                                    end=date(2026, 11, 29), weeks=4)

    # weeks of 2, 9, 16, 23 November: 0, 9, 6, 2 people; the period (16–29 November) holds 8 = 6 + 2,
    # so hiding the 2 takes the 6 along, while the 9 outside the period stays
    assert [week.people.count for week in summary.trend] == [0, 9, None, None]
    assert summary.people == A.Figure(8)


async def test_retention_signals_count_submitted_answers_with_small_options_hidden(db):
    async with db.unit() as uow:
        members = await people(uow, 9, school=0)
        version = await S.latest_version(uow, "young_teacher", now=NOW)
        q10 = ["yes"] * 6 + ["partly"] * 2 + ["no"]
        q11 = ["career"] * 5 + ["never_leave"] * 4
        for index, member in enumerate(members):
            status = "submitted" if index < 8 else "draft"  # a draft does not count
            response_id = (await uow.session.execute(
                insert(SurveyResponse).values(member_id=member.id, version_id=version.id, status=status,
                                              started_at=NOW, updated_at=NOW, submitted_at=NOW)
                .returning(SurveyResponse.id))).scalar_one()
            await uow.session.execute(insert(SurveyAnswer), [
                {"response_id": response_id, "question_code": "q10", "value": q10[index], "answered_at": NOW},
                {"response_id": response_id, "question_code": "q11", "value": q11[index], "answered_at": NOW},
            ])

        summary = await A.summarise(uow, members[0].municipality_id, start=START, end=END, weeks=0)

    satisfied, plans = summary.retention["q10"], summary.retention["q11"]
    # q10 among 8 submitted: yes 6, partly 2 (hidden), no 0; 8 = 6 + 2 + 0 so the 6 is hidden too
    assert satisfied.respondents == A.Figure(8)
    assert satisfied.codes == {"partly": A.Figure(None), "yes": A.Figure(None), "no": A.Figure(0, 0.0)}
    # q11: career 5, never_leave 3 (hidden) → the 5 goes too
    assert plans.codes["career"] == A.Figure(None) and plans.codes["never_leave"] == A.Figure(None)
    assert plans.codes["leave_asap"] == A.Figure(0, 0.0)


async def test_only_a_coordinator_of_the_municipality_gets_the_summary(db):
    async with db.unit() as uow:
        [stranger] = await people(uow, 1, school=0, municipality="novotroitsk", role=Role.COORDINATOR)
        [teacher] = await people(uow, 1, school=0)

        with pytest.raises(Forbidden):
            await A.deficit_summary(uow, stranger, start=START, end=END, municipality_id=teacher.municipality_id)
        with pytest.raises(Forbidden):
            await A.deficit_summary(uow, teacher, start=START, end=END)


async def test_the_summary_holds_every_code_of_every_kind(db):
    async with db.unit() as uow:
        [teacher] = await people(uow, 1, school=0)

        summary = await A.summarise(uow, teacher.municipality_id, start=START, end=END)

    assert set(summary.kinds) == {"deficit_group", "difficulty", "help_direction", "need"}
    assert set(summary.kinds["help_direction"].overall.codes) == {
        "subject_methods", "curriculum", "lessons", "assessment", "gia", "projects", "upbringing", "parents",
        "uud", "special_needs", "it", "other"}
    assert len(summary.trend) == A.DEFAULT_WEEKS

"""Questionnaire versions, responses, campaigns, anonymous surveys and deficit reports (real storage)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from dialogs.questionnaires.schema import QuestionnaireError
from storage.models import Member, Role
from storage.models_outbox import OutboxMessage
from storage.models_surveys import (
    AnonymousAnswer,
    DeficitItem,
    DeficitReport,
    QuestionnaireVersion,
    SurveyAnswer,
    SurveyMark,
    SurveyResponse,
)
from storage.services import surveys as S
from storage.services.errors import Conflict, Forbidden

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 26)
WINDOW = {"opens_on": date(2026, 11, 1), "closes_on": date(2026, 12, 31)}

# A complete synthetic answer sheet of the young-teacher questionnaire: code → (value, «Другое» text).
YOUNG = {
    "q1": ("female", None), "q2": ("under_25", None), "q3": ("from_1_to_2", None),
    "q4": ("other", "Бакалавриат и переподготовка"), "q5": ("teacher", None), "q6": ("РГПУ им. А. И. Герцена", None),
    "q7": (2024, None), "q8": ("conscious", None), "q9": (["master", "second_higher"], None), "q10": ("partly", None),
    "q11": ("career", None), "q12": (["discipline", "time", "other"], "Много отчётов"),
    "q13": (["methodical", "selforg"], None), "q14": (["peer_community", "qualification", "other"], "Оценивание"),
    "q15": ("daily", None), "q16": ("Помогает с планированием уроков", None), "q17": ("master_class", None),
    "q18": ("creative_group", None), "q19": ("yes", None), "q20": ("Работа с родителями", None),
    "q21": (["master_class", "conferences"], None), "q22": ("no", None), "q23": ("Не участвовала", None),
    "q24": ("Форум молодых педагогов", None), "q25": ("yes", None), "q26": ("no", None),
}


async def add_member(uow, *, role=Role.TEACHER, municipality="vsevolozhsky", school=0, start=2025, birth=1999,
                     subject="philology", name="Тестова Анна Сергеевна") -> Member:
    muni = await uow.reference.municipality_by_code(municipality)
    orgs = await uow.reference.organisations(muni.id, kind="school")
    member = Member(role=role, full_name=name, municipality_id=muni.id, organisation_id=orgs[school].id,
                    subject_area=subject, teaching_start_year=start, birth_year=birth, mentor_confirmed=False,
                    created_at=NOW, updated_at=NOW, last_seen_at=NOW)
    uow.members.add(member)
    await uow.flush()
    return member


async def coordinator(uow, municipality="vsevolozhsky") -> Member:
    return await add_member(uow, role=Role.COORDINATOR, municipality=municipality, name="Координатор Ольга Ивановна")


async def fill(uow, member, response, answers=YOUNG):
    questionnaire = await S.questionnaire_for_response(uow, response, member)
    for code, (value, other) in answers.items():
        await S.save_answer(uow, response, questionnaire, code, value, other, now=NOW)
    return questionnaire


async def young_campaign(uow, actor, code=S.YOUNG_TEACHER):
    return await S.open_campaign(uow, actor, questionnaire_code=code, now=NOW, **WINDOW)


# ---- versions -----------------------------------------------------------------------------------


async def test_builtin_questionnaires_are_stored_once_and_a_second_sync_adds_nothing(db):
    async with db.unit() as uow:
        first = await S.sync_builtin_questionnaires(uow, now=NOW)
        second = await S.sync_builtin_questionnaires(uow, now=NOW)
        await uow.commit()
        count = (await uow.session.execute(select(func.count(QuestionnaireVersion.id)))).scalar_one()

    assert sorted(v.version.code for v in first if v.created) == [
        "course_feedback", "event_feedback", "teacher_support", "young_teacher"]
    assert not any(v.created for v in second)
    assert count == 4


async def test_an_imported_change_becomes_a_new_version_and_earlier_responses_keep_theirs(db, tmp_path):
    from dialogs.questionnaires.schema import BUILTIN_DIR

    changed = (BUILTIN_DIR / "young_teacher.yaml").read_text(encoding="utf-8").replace(
        'text: "Ваш пол"', 'text: "Ваш пол (по паспорту)"')
    path = tmp_path / "young_teacher.yaml"
    path.write_text(changed, encoding="utf-8")
    async with db.unit() as uow:
        member = await add_member(uow)
        old = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        await S.save_answer(uow, old, await S.questionnaire_for_response(uow, old, member), "q1", "male", now=NOW)

        stored = await S.import_questionnaire(uow, path, now=NOW)
        again = await S.import_questionnaire(uow, path, now=NOW)
        old_questionnaire = await S.questionnaire_for_response(uow, old, member)

    assert stored.created and stored.version.version == 2
    assert not again.created
    assert old.version_id != stored.version.id
    assert old_questionnaire.question("q1").text == "Ваш пол"
    assert S.questionnaire_of(stored.version).question("q1").text == "Ваш пол (по паспорту)"


async def test_an_invalid_questionnaire_file_is_refused_with_its_line(db, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "code: bad\nversion: 1\ntitle: T\nsource: S\naudience: all_teachers\npreamble: P\nquestions:\n"
        "  - code: q1\n    number: 1\n    text: Q\n    type: single\n", encoding="utf-8")

    async with db.unit() as uow:
        with pytest.raises(QuestionnaireError) as error:
            await S.import_questionnaire(uow, path, now=NOW)

    assert "bad.yaml, line 8" in str(error.value) and "needs options" in str(error.value)


# ---- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "other", "reason"),
    [
        ("q1", "robot", None, "not_an_option"),
        ("q9", ["master", "no"], None, "exclusive"),
        ("q12", [], None, "required"),
        ("q7", "20 21", None, "year_format"),
        ("q7", 1949, None, "year_range"),
        ("q7", "2027", None, "year_range"),
        ("q6", "x" * 301, None, "too_long"),
        ("q16", "   ", None, "required"),
        ("q4", "other", "  ", "other_required"),
    ],
)
def test_an_answer_that_does_not_fit_its_question_is_refused(code, value, other, reason):
    question = S.builtin_questionnaires()["young_teacher"].question(code)

    with pytest.raises(S.InvalidAnswer) as error:
        S.check_answer(question, value, other, today=TODAY)

    assert error.value.reason == reason


async def test_a_refused_answer_is_not_stored(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await S.questionnaire_for_response(uow, response, member)

        with pytest.raises(S.InvalidAnswer):
            await S.save_answer(uow, response, questionnaire, "q9", ["master", "no"], now=NOW)

        assert await S.answers_of(uow, response.id) == {}


async def test_year_range_error_names_the_bounds(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await S.questionnaire_for_response(uow, response, member)

        with pytest.raises(S.InvalidAnswer) as error:
            await S.save_answer(uow, response, questionnaire, "q7", "1900", now=NOW)

    assert error.value.params == {"low": 1950, "high": 2026}


async def test_a_multi_answer_is_stored_in_option_order_with_the_other_text(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await S.questionnaire_for_response(uow, response, member)

        await S.save_answer(uow, response, questionnaire, "q12", ["other", "time", "discipline"], " Отчёты ", now=NOW)
        await S.save_answer(uow, response, questionnaire, "q4", "postgraduate", "ignored", now=NOW)

        answers = await S.answers_of(uow, response.id)
    assert answers["q12"] == S.StoredAnswer(["discipline", "time", "other"], "Отчёты")
    assert answers["q4"] == S.StoredAnswer("postgraduate", None)


async def test_club_questions_are_skipped_after_no_and_their_old_answers_dropped_on_submit(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await fill(uow, member, response, {**YOUNG, "q26": ("yes", None)})
        await S.save_answer(uow, response, questionnaire, "q27", "Квесты", now=NOW)
        await S.save_answer(uow, response, questionnaire, "q26", "no", now=NOW)
        answers = await S.answers_of(uow, response.id)

        after_26 = S.next_question(questionnaire, answers, "q26")
        await S.submit(uow, member, response, questionnaire, now=NOW)
        stored = set((await S.answers_of(uow, response.id)))

    assert after_26 is None
    assert [q.code for q in S.applicable(questionnaire, answers)][-1] == "q26"
    assert stored == set(YOUNG)


async def test_going_back_from_a_question_gives_the_previous_asked_one(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await fill(uow, member, response)
        answers = await S.answers_of(uow, response.id)

    assert S.previous_question(questionnaire, answers, "q7").code == "q6"
    assert S.previous_question(questionnaire, answers, "q1") is None
    assert S.previous_question(questionnaire, answers, None).code == "q26"
    assert S.next_question(questionnaire, answers, None).code == "q1"


async def test_submitting_with_a_required_question_unanswered_names_it(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await fill(uow, member, response, {k: v for k, v in YOUNG.items() if k != "q13"})

        with pytest.raises(S.Incomplete) as error:
            await S.submit(uow, member, response, questionnaire, now=NOW)

    assert error.value.question == "q13"


async def test_submitting_the_young_teacher_questionnaire_feeds_a_deficit_report(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        response = await S.start_or_resume(uow, member, now=NOW, questionnaire_code=S.YOUNG_TEACHER)
        questionnaire = await fill(uow, member, response)

        result = await S.submit(uow, member, response, questionnaire, now=NOW)
        await uow.commit()
        report = (await uow.session.execute(select(DeficitReport))).scalar_one()
        items = set((await uow.session.execute(select(DeficitItem.kind, DeficitItem.code))).all())

    assert result.response.status == "submitted" and result.report.id == report.id
    assert (report.source, report.member_id, report.organisation_id, report.created_on) == (
        "questionnaire", member.id, member.organisation_id, TODAY)
    assert items == {
        ("difficulty", "discipline"), ("difficulty", "time"), ("difficulty", "other"),
        ("deficit_group", "methodical"), ("deficit_group", "selforg"),
        ("need", "peer_community"), ("need", "qualification"), ("need", "other"),
    }


# ---- campaigns ----------------------------------------------------------------------------------


async def test_a_campaign_takes_one_response_per_person(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor)
        response = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        same = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        questionnaire = await fill(uow, member, response)
        await S.submit(uow, member, response, questionnaire, now=NOW)

        with pytest.raises(Conflict):
            await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
    assert same.id == response.id


async def test_the_database_itself_refuses_a_second_response_to_a_campaign(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor)
        first = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        await uow.commit()

        uow.session.add(SurveyResponse(member_id=member.id, campaign_id=campaign.id, version_id=first.version_id,
                                       status="draft", started_at=NOW, updated_at=NOW))
        with pytest.raises(IntegrityError):
            await uow.flush()


async def test_only_a_coordinator_of_the_municipality_opens_a_campaign(db):
    async with db.unit() as uow:
        teacher = await add_member(uow)
        other = await coordinator(uow, municipality="novotroitsk")

        with pytest.raises(Forbidden):
            await young_campaign(uow, teacher)
        with pytest.raises(Forbidden):
            await S.open_campaign(uow, other, questionnaire_code=S.YOUNG_TEACHER, now=NOW,
                                  municipality_id=teacher.municipality_id, **WINDOW)


async def test_the_default_window_is_may_to_june(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)

        campaign = await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=NOW)

    assert (campaign.opens_on, campaign.closes_on) == (date(2027, 5, 1), date(2027, 6, 30))
    assert S.default_window(date(2027, 3, 1)) == (date(2027, 5, 1), date(2027, 6, 30))


async def test_an_overlapping_campaign_of_the_same_questionnaire_is_refused(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        await young_campaign(uow, actor)

        with pytest.raises(Conflict):
            await young_campaign(uow, actor)
        support = await young_campaign(uow, actor, code=S.TEACHER_SUPPORT)
    assert support.id


async def test_the_cohort_follows_the_municipality_rule(db):
    async with db.unit() as uow:
        muni = await uow.reference.municipality_by_code("vsevolozhsky")
        muni.young_max_age = 30
        young = await add_member(uow, start=2025, birth=2000)
        too_old = await add_member(uow, start=2025, birth=1990)
        too_experienced = await add_member(uow, start=2020, birth=2000)
        mentor = await add_member(uow, role=Role.MENTOR, start=2000, birth=1970)

        people = await S.cohort(uow, muni.id, "young_teachers", TODAY)
        everyone = await S.cohort(uow, muni.id, "all_teachers", TODAY)

    assert [m.id for m in people] == [young.id]
    assert {m.id for m in everyone} == {young.id, too_old.id, too_experienced.id, mentor.id}


async def test_invitations_go_to_the_cohort_once_and_reminders_only_to_those_not_finished(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        done = await add_member(uow)
        pending = await add_member(uow, school=1)
        campaign = await young_campaign(uow, actor)

        invited = await S.invite_cohort(uow, campaign, text="Приглашение", button="Заполнить", now=NOW)
        again = await S.invite_cohort(uow, campaign, text="Приглашение", button="Заполнить", now=NOW)
        response = await S.start_or_resume(uow, done, now=NOW, campaign_id=campaign.id)
        await S.submit(uow, done, response, await fill(uow, done, response), now=NOW)
        reminded = await S.remind_unfinished(uow, campaign, text="Напоминание", button="Заполнить", now=NOW)
        keys = set((await uow.session.execute(select(OutboxMessage.key))).scalars())

    assert (invited, again, reminded) == (2, 0, 1)
    assert keys == {
        f"campaign:{campaign.id}:invite:{done.id}", f"campaign:{campaign.id}:invite:{pending.id}",
        f"campaign:{campaign.id}:remind:2026-11-26:{pending.id}",
    }


async def test_an_invitation_waits_for_the_opening_day_and_skips_quiet_hours(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=NOW)

        await S.invite_cohort(uow, campaign, text="Приглашение", button="Заполнить", now=NOW)
        row = (await uow.session.execute(select(OutboxMessage))).scalar_one()

    assert row.member_id == member.id
    assert row.due_at == datetime(2027, 5, 1, 7, 0, tzinfo=timezone.utc)  # 10:00 in Moscow
    assert row.buttons == [["Заполнить", "flow:questionnaire"]]


async def test_closing_a_campaign_cancels_unsent_invitations_and_stops_answers(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor)
        await S.invite_cohort(uow, campaign, text="Приглашение", button="Заполнить", now=NOW)

        await S.close_campaign(uow, actor, campaign.id, now=NOW)
        state = (await uow.session.execute(select(OutboxMessage.state))).scalar_one()

        with pytest.raises(Conflict):
            await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
    assert state == "cancelled"


async def test_response_rate_is_counted_by_school(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        a1 = await add_member(uow, school=0)
        await add_member(uow, school=0)
        b1 = await add_member(uow, school=1)
        campaign = await young_campaign(uow, actor)
        for member in (a1, b1):
            response = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
            if member is a1:
                await S.submit(uow, member, response, await fill(uow, member, response), now=NOW)

        rate = await S.response_rate(uow, actor, campaign.id)

    rows = [(s.cohort, s.started, s.submitted) for s in rate.schools]
    assert rows == [(2, 1, 1), (1, 1, 0)]
    assert (rate.cohort, rate.submitted, round(rate.rate, 3)) == (3, 1, 0.333)


async def test_a_coordinator_of_another_municipality_sees_no_response_rate(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        stranger = await coordinator(uow, municipality="novotroitsk")
        campaign = await young_campaign(uow, actor)

        with pytest.raises(Forbidden):
            await S.response_rate(uow, stranger, campaign.id)


async def test_only_open_campaigns_for_the_member_are_offered(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        young = await add_member(uow)
        mentor = await add_member(uow, role=Role.MENTOR, start=2000, birth=1970)
        young_c = await young_campaign(uow, actor)
        support_c = await young_campaign(uow, actor, code=S.TEACHER_SUPPORT)

        for_young = await S.available_surveys(uow, young, now=NOW)
        for_mentor = await S.available_surveys(uow, mentor, now=NOW)

    assert [a.campaign.id for a in for_young] == [young_c.id, support_c.id]
    assert [a.campaign.id for a in for_mentor] == [support_c.id]


# ---- anonymous surveys --------------------------------------------------------------------------

SUPPORT = {
    "q1": (["lessons", "it", "other"], "Наставничество"),
    "q3": (["consultations"], None), "q4": ("internet", None), "q6": ("rather_yes", None), "q7": ("yes", None),
    "q9": ("no", None), "q10": ("yes", None), "q12": (["teacher"], None), "q13": (["philology"], None),
    "q14": ("under_5", None), "q15": ("higher", None), "q16": ("none", None), "q17": ("none", None),
}


async def answer_support(uow, member, campaign):
    response = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
    questionnaire = await fill(uow, member, response, SUPPORT)
    for question in ("q2", "q5", "q8"):
        for row in questionnaire.question(question).rows:
            await S.save_matrix_row(uow, response, questionnaire, question, row.code,
                                    questionnaire.question(question).options[0].code, now=NOW)
    return response, questionnaire


async def test_an_anonymous_submission_leaves_answers_without_any_link_to_the_person(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor, code=S.TEACHER_SUPPORT)
        response, questionnaire = await answer_support(uow, member, campaign)

        result = await S.submit(uow, member, response, questionnaire, now=NOW)
        await uow.commit()
        rows = list((await uow.session.execute(select(AnonymousAnswer))).scalars())
        marks = list((await uow.session.execute(select(SurveyMark))).scalars())
        leftovers = (await uow.session.execute(select(func.count(SurveyResponse.id)))).scalar_one()
        answers_left = (await uow.session.execute(select(func.count(SurveyAnswer.id)))).scalar_one()
        reports = (await uow.session.execute(select(func.count(DeficitReport.id)))).scalar_one()

    assert result.anonymous and result.response is None
    assert len(rows) == len(SUPPORT) + 3 and len({r.sheet for r in rows}) == 1
    assert all(len(r.id) == 32 and r.day == TODAY and r.campaign_id == campaign.id for r in rows)
    assert {c.name for c in inspect(AnonymousAnswer).columns} == {
        "id", "sheet", "campaign_id", "day", "question_code", "value", "other_text"}
    assert {c.name for c in inspect(SurveyMark).columns} == {"campaign_id", "member_id"}
    assert [(m.campaign_id, m.member_id) for m in marks] == [(campaign.id, member.id)]
    assert (leftovers, answers_left, reports) == (0, 0, 0)
    matrix = next(r for r in rows if r.question_code == "q8")
    assert matrix.value == {"school": "yes", "district": "yes", "regional": "yes"}


async def test_an_anonymous_survey_cannot_be_answered_twice(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor, code=S.TEACHER_SUPPORT)
        response, questionnaire = await answer_support(uow, member, campaign)
        await S.submit(uow, member, response, questionnaire, now=NOW)

        with pytest.raises(Conflict):
            await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        offered = await S.available_surveys(uow, member, now=NOW)
        rate = await S.response_rate(uow, actor, campaign.id)
    assert offered == [] and rate.submitted == 1


async def test_a_matrix_needs_every_row_before_submitting(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow)
        campaign = await young_campaign(uow, actor, code=S.TEACHER_SUPPORT)
        response = await S.start_or_resume(uow, member, now=NOW, campaign_id=campaign.id)
        questionnaire = await fill(uow, member, response, SUPPORT)
        await S.save_matrix_row(uow, response, questionnaire, "q2", "documentation", "definitely", now=NOW)

        with pytest.raises(S.Incomplete) as error:
            await S.submit(uow, member, response, questionnaire, now=NOW)
    assert error.value.question == "q2"


# ---- year over year and deficits ------------------------------------------------------------------


async def test_a_teachers_answers_from_two_campaigns_come_side_by_side(db, clock):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        member = await add_member(uow, start=2025)
        first = await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=NOW,
                                      opens_on=date(2026, 5, 1), closes_on=date(2026, 6, 30))
        later = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)
        response = await S.start_or_resume(uow, member, now=later, campaign_id=first.id)
        await S.submit(uow, member, response, await fill(uow, member, response), now=later)
        second = await young_campaign(uow, actor)
        response = await S.start_or_resume(uow, member, now=NOW, campaign_id=second.id)
        await S.submit(uow, member, response,
                       await fill(uow, member, response, {**YOUNG, "q3": ("from_2_to_3", None)}), now=NOW)

        table = await S.answers_side_by_side(uow, actor, member.id)

    rows = {code: values for code, _title, values in table.rows}
    assert table.columns == ["05.2026", "11.2026"]  # one year twice: told apart by month
    assert rows["q3"] == ["от 1 года до 2 лет", "от 2 лет до 3 лет"]
    assert rows["q12"][0] == "Проблемы дисциплины на уроке; Проблемы нехватки времени; Другое: Много отчётов"


async def two_years_of(uow, actor, *members):
    """Submit the young-teacher questionnaire for `members[0]` in a May campaign and for every
    member in the current one (the first with a changed q3)."""
    may = await S.open_campaign(uow, actor, questionnaire_code=S.YOUNG_TEACHER, now=NOW,
                                opens_on=date(2026, 5, 1), closes_on=date(2026, 6, 30))
    later = datetime(2026, 5, 20, 9, 0, tzinfo=timezone.utc)
    response = await S.start_or_resume(uow, members[0], now=later, campaign_id=may.id)
    await S.submit(uow, members[0], response, await fill(uow, members[0], response), now=later)
    current = await young_campaign(uow, actor)
    for index, member in enumerate(members):
        response = await S.start_or_resume(uow, member, now=NOW, campaign_id=current.id)
        answers = {**YOUNG, "q3": ("from_2_to_3", None)} if index == 0 else YOUNG
        await S.submit(uow, member, response, await fill(uow, member, response, answers), now=NOW)


async def test_respondents_are_the_coordinators_own_those_who_answered_twice_first(db):
    async with db.unit() as uow:
        actor = await coordinator(uow)
        foreign = await coordinator(uow, municipality="kopeysk")
        twice = await add_member(uow, name="Яковлева Анна Сергеевна")
        once = await add_member(uow, name="Абрамова Вера Ильинична")
        await add_member(uow, name="Борисова Ирина Олеговна")  # never answered
        await two_years_of(uow, actor, twice, once)

        people = await S.respondents(uow, actor)
        nobody = await S.respondents(uow, foreign)
        with pytest.raises(Forbidden):
            await S.answers_side_by_side(uow, foreign, twice.id)

    assert [(p.full_name, p.responses) for p in people] == [
        ("Яковлева Анна Сергеевна", 2), ("Абрамова Вера Ильинична", 1)]
    assert nobody == []


async def test_a_self_report_stores_its_items_and_school(db):
    async with db.unit() as uow:
        member = await add_member(uow, subject="math_it")

        report = await S.report_deficits(uow, member, now=NOW, groups=["ict"], difficulties=["time"],
                                         help_directions=["it", "gia"], comment="  Не успеваю  ")
        items = sorted((await uow.session.execute(select(DeficitItem.kind, DeficitItem.code))).all())

    assert (report.source, report.subject_area, report.comment) == ("self", "math_it", "Не успеваю")
    assert items == [("deficit_group", "ict"), ("difficulty", "time"), ("help_direction", "gia"),
                     ("help_direction", "it")]


async def test_an_empty_or_unknown_self_report_is_refused(db):
    async with db.unit() as uow:
        member = await add_member(uow)

        with pytest.raises(S.InvalidAnswer):
            await S.report_deficits(uow, member, now=NOW)
        with pytest.raises(S.InvalidAnswer):
            await S.report_deficits(uow, member, now=NOW, groups=["astrology"])


async def test_the_monthly_nudge_goes_to_young_teachers_once_a_month(db):
    async with db.unit() as uow:
        member = await add_member(uow)
        await add_member(uow, start=2010)

        first = await S.deficit_nudges(uow, member.municipality_id, text="Как дела?", button="Сообщить", now=NOW)
        again = await S.deficit_nudges(uow, member.municipality_id, text="Как дела?", button="Сообщить", now=NOW)
        key = (await uow.session.execute(select(OutboxMessage.key))).scalar_one()

    assert (first, again) == (1, 0)
    assert key == f"deficits:nudge:2026-11:{member.id}"

"""Mentoring services on real storage: matching, proposals, pairs, meetings, nudges, stale actions."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from scheduler.jobs_mentoring import run_nudges
from storage.models import Account, Member, Organisation, Role
from storage.models_mentoring import MentorMeeting, MentorPair, MentorProposal, MentorRequest
from storage.models_outbox import OutboxMessage
from storage.services import mentoring as svc
from storage.services.errors import Conflict, Forbidden, NotFound

SCHOOL_1 = "МОБУ «СОШ № 1», Всеволожск"
SCHOOL_2 = "МОБУ «СОШ № 2», Кудрово"
SCHOOL_3 = "МОБУ «СОШ № 3», Сертолово"


# ---- arranging a municipality ---------------------------------------------------------------


async def _org(uow, name: str) -> int:
    return (await uow.session.execute(select(Organisation.id).where(Organisation.name == name))).scalar_one()


async def _muni(uow, code: str) -> int:
    return (await uow.reference.municipality_by_code(code)).id


async def add_member(uow, *, role: str, name: str, org: str | None = None, subject: str | None = "math_it",
                     muni: str = "vsevolozhsky", confirmed: bool = True, now=None) -> Member:
    member = Member(
        role=role, full_name=name, municipality_id=await _muni(uow, muni),
        organisation_id=await _org(uow, org) if org else None, subject_area=subject,
        teaching_start_year=2024, birth_year=1998, mentor_confirmed=confirmed and role == Role.MENTOR,
        created_at=now, updated_at=now, last_seen_at=now,
    )
    uow.session.add(member)
    await uow.flush()
    await uow.session.refresh(member)
    return member


async def add_mentor(uow, now, name="Наставникова Анна Ивановна", org=SCHOOL_1, subject="math_it", *,
                     capacity=1, network=False, strengths=(), share_link=False, phone=None) -> Member:
    mentor = await add_member(uow, role=Role.MENTOR, name=name, org=org, subject=subject, now=now)
    await svc.save_mentor_profile(
        uow, mentor, category="highest", strengths=strengths, help_directions=["lessons"], capacity=capacity,
        accepts_network=network, share_link=share_link, contact_phone=phone, now=now,
    )
    return mentor


async def add_mentee(uow, now, name="Молодова Мария Петровна", org=SCHOOL_1, subject="math_it", *,
                     deficits=(), ask=True, share_link=False, phone=None) -> Member:
    mentee = await add_member(uow, role=Role.TEACHER, name=name, org=org, subject=subject, now=now)
    if ask:
        await svc.ask_for_mentor(uow, mentee, deficit_groups=deficits, share_link=share_link, contact_phone=phone,
                                 now=now)
    return mentee


async def add_coordinator(uow, now, name="Координаторова Ольга Сергеевна", muni="vsevolozhsky") -> Member:
    return await add_member(uow, role=Role.COORDINATOR, name=name, subject=None, muni=muni, now=now)


async def outbox(uow, *, kind: str | None = None, member_id: int | None = None) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind:
        query = query.where(OutboxMessage.kind == kind)
    if member_id:
        query = query.where(OutboxMessage.member_id == member_id)
    return list((await uow.session.execute(query)).scalars())


async def active_pairs(uow) -> list[MentorPair]:
    return list((await uow.session.execute(select(MentorPair).where(MentorPair.ended_at.is_(None)))).scalars())


async def approved_proposal(uow, now, coordinator, mentee, mentor) -> MentorProposal:
    """A proposal for exactly this pair, approved by the coordinator."""
    proposals = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=now)
    proposal = next(p for p in proposals if p.mentee_id == mentee.id)
    assert proposal.mentor_id == mentor.id
    return await svc.approve_proposal(uow, coordinator, proposal.id, now=now)


@pytest.fixture
async def uow(db):
    async with db.unit() as unit:
        yield unit


# ---- profiles and requests ------------------------------------------------------------------


async def test_a_mentor_profile_is_saved_and_replaced(uow, clock):
    mentor = await add_mentor(uow, clock.now, strengths=["ict"], capacity=2)

    await svc.save_mentor_profile(uow, mentor, category="first", strengths=["methodical", "ict"], help_directions=[],
                                  capacity=3, accepts_network=True, share_link=True, contact_phone=" +7 900 ",
                                  now=clock.now)

    profile = await svc.mentor_profile(uow, mentor.id)
    assert (profile.category, profile.strengths, profile.capacity, profile.accepts_network) == (
        "first", ["ict", "methodical"], 3, True)
    assert (profile.share_link, profile.contact_phone) == (True, "+7 900")


async def test_only_a_mentor_has_a_mentor_profile(uow, clock):
    teacher = await add_mentee(uow, clock.now, ask=False)

    with pytest.raises(Forbidden):
        await svc.save_mentor_profile(uow, teacher, category="none", strengths=[], help_directions=[], capacity=1,
                                      accepts_network=False, share_link=False, contact_phone=None, now=clock.now)


async def test_asking_twice_updates_the_one_open_request(uow, clock):
    mentee = await add_mentee(uow, clock.now, deficits=["ict"])

    await svc.ask_for_mentor(uow, mentee, deficit_groups=["methodical"], share_link=True, contact_phone=None,
                             now=clock.now)

    requests = list((await uow.session.execute(select(MentorRequest))).scalars())
    assert [(r.state, r.deficit_groups, r.share_link) for r in requests] == [("open", ["methodical"], True)]


async def test_a_paired_mentee_cannot_ask_again(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.MENTEE_PAIRED):
        await svc.ask_for_mentor(uow, mentee, deficit_groups=[], share_link=False, contact_phone=None, now=clock.now)


# ---- matching -------------------------------------------------------------------------------


async def test_matching_maximises_the_total_score_where_greedy_would_not(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    x = await add_mentor(uow, clock.now, "Икс Мария Ивановна", SCHOOL_1, "math_it")
    z = await add_mentor(uow, clock.now, "Зет Анна Ивановна", SCHOOL_2, "math_it", network=True,
                         strengths=["methodical"])
    a = await add_mentee(uow, clock.now, "Аова Анна Петровна", SCHOOL_1, "math_it", deficits=["methodical"])
    b = await add_mentee(uow, clock.now, "Бова Вера Петровна", SCHOOL_1, "philology")

    proposals = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    assert {(p.mentee_id, p.mentor_id, p.score) for p in proposals} == {(a.id, z.id, 5), (b.id, x.id, 5)}
    by_mentee = {p.mentee_id: p.reasons for p in proposals}
    assert by_mentee[a.id] == ["network", "same_subject", "deficit:methodical", "same_kind"]
    assert by_mentee[b.id] == ["same_school", "same_kind"]
    assert {p.state for p in proposals} == {"proposed"}


async def test_deficits_come_from_the_request_and_the_newest_deficit_report(uow, clock):
    from storage.services.surveys import report_deficits

    mentee = await add_mentee(uow, clock.now, deficits=["ict"])
    await report_deficits(uow, mentee, groups=["subject"], now=clock.now)
    clock.advance(days=2)
    await report_deficits(uow, mentee, groups=["methodical", "communicative"], now=clock.now)

    groups = await svc.mentee_deficit_groups(uow, [mentee.id])

    assert groups == {mentee.id: frozenset({"ict", "methodical", "communicative"})}


async def test_matching_only_for_the_coordinators_own_municipality(uow, clock):
    other = await add_coordinator(uow, clock.now, muni="kirovsky-spb")
    muni = await _muni(uow, "vsevolozhsky")

    with pytest.raises(Forbidden):
        await svc.run_matching(uow, other, muni, now=clock.now)


async def test_matching_never_reproposes_ended_declined_excluded_or_pending_pairs(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    ended = await add_mentor(uow, clock.now, "Первая Анна Ивановна")
    declined = await add_mentor(uow, clock.now, "Вторая Анна Ивановна")
    excluded = await add_mentor(uow, clock.now, "Третья Анна Ивановна")
    mentee = await add_mentee(uow, clock.now)
    pair = await svc.pair_by_hand(uow, coordinator, mentee.id, ended.id, now=clock.now)
    await svc.end_pair(uow, coordinator, pair.id, reason="other", now=clock.now)
    await svc.ask_for_mentor(uow, mentee, deficit_groups=[], share_link=False, contact_phone=None, now=clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, declined)
    await svc.decline_proposal(uow, declined, proposal.id, now=clock.now)  # proposes `excluded` as next best
    live = (await svc.proposals_in(uow, coordinator, coordinator.municipality_id))[0]
    assert live.mentor_id == excluded.id
    await svc.add_exclusion(uow, mentee, excluded.id, now=clock.now)

    again = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    assert again == []
    assert (await uow.session.get(MentorProposal, live.id)).close_reason == "excluded"


async def test_matching_leaves_out_mentees_with_a_pending_proposal_and_full_mentors(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    await add_mentor(uow, clock.now, capacity=1)
    await add_mentee(uow, clock.now, "Первова Анна Петровна")
    await add_mentee(uow, clock.now, "Второва Анна Петровна")
    first = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    second = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    assert len(first) == 1 and second == []


# ---- coordinator decisions and the mentor's answer ------------------------------------------


async def test_approving_asks_the_mentor(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)

    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)

    assert proposal.state == "approved" and proposal.decided_by == coordinator.id
    [notice] = await outbox(uow, kind="mentoring.proposal")
    assert notice.member_id == mentor.id and "Молодова Мария Петровна" in notice.text
    assert notice.buttons == [["Открыть предложение", "flow:mentor_proposals"]]


async def test_approving_when_the_mentor_filled_up_meanwhile_is_refused(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now, capacity=1)
    mentee = await add_mentee(uow, clock.now)
    other = await add_mentee(uow, clock.now, "Другова Анна Петровна", ask=False)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)
    await svc.pair_by_hand(uow, coordinator, other.id, mentor.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.MENTOR_FULL):
        await svc.approve_proposal(uow, coordinator, proposal.id, now=clock.now)

    assert (await uow.session.get(MentorProposal, proposal.id)).mentee_id == mentee.id


async def test_approving_after_the_mentor_lowered_their_capacity_is_refused(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now, capacity=1)
    await add_mentee(uow, clock.now)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)
    await svc.save_mentor_profile(uow, mentor, category="none", strengths=[], help_directions=[], capacity=0,
                                  accepts_network=False, share_link=False, contact_phone=None, now=clock.now)

    with pytest.raises(Conflict, match=svc.MENTOR_FULL):
        await svc.approve_proposal(uow, coordinator, proposal.id, now=clock.now)

    assert proposal.state == "proposed"


async def test_a_second_coordinator_approving_the_same_proposal_gets_a_clear_answer(uow, clock):
    first = await add_coordinator(uow, clock.now)
    second = await add_coordinator(uow, clock.now, "Вторая Ольга Сергеевна")
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, first, mentee, mentor)

    with pytest.raises(Conflict, match=svc.PROPOSAL_NOT_PENDING):
        await svc.approve_proposal(uow, second, proposal.id, now=clock.now)


async def test_approving_a_rejected_proposal_is_refused(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    await add_mentor(uow, clock.now)
    await add_mentee(uow, clock.now)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)
    await svc.reject_proposal(uow, coordinator, proposal.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.PROPOSAL_WITHDRAWN):
        await svc.approve_proposal(uow, coordinator, proposal.id, now=clock.now)


async def test_accepting_starts_the_pair_and_shares_the_agreed_contacts(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now, share_link=True, phone="+7 000 111-22-33")
    mentee = await add_mentee(uow, clock.now, share_link=False, phone=None)
    uow.session.add(Account(transport="telegram", external_id="5550001", chat_id="5550001", member_id=mentor.id))
    uow.session.add(Account(transport="vk", external_id="7770002", chat_id="7770002", member_id=mentee.id))
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)

    pair = await svc.accept_proposal(uow, mentor, proposal.id, now=clock.now)

    assert (pair.mentor_id, pair.mentee_id, pair.ended_at) == (mentor.id, mentee.id, None)
    assert (await uow.session.get(MentorProposal, proposal.id)).state == "accepted"
    assert (await svc.latest_request(uow, mentee.id)).state == "matched"
    [to_mentee] = await outbox(uow, kind="mentoring.pair", member_id=mentee.id)
    [to_mentor] = await outbox(uow, kind="mentoring.pair", member_id=mentor.id)
    assert "tg://user?id=5550001" in to_mentee.text and "+7 000 111-22-33" in to_mentee.text
    assert "vk.com" not in to_mentor.text and "Контакты не указаны" in to_mentor.text
    assert "встретиться в ближайшие 7 дней" in to_mentee.text


async def test_accepting_withdraws_every_other_pending_proposal_for_the_mentee(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    other_mentor = await add_mentor(uow, clock.now, "Другая Анна Ивановна")
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)
    extra = MentorProposal(municipality_id=mentee.municipality_id, mentee_id=mentee.id, mentor_id=other_mentor.id,
                           state="proposed", created_at=clock.now, reasons=[])
    uow.session.add(extra)
    await uow.flush()

    await svc.accept_proposal(uow, mentor, proposal.id, now=clock.now)

    await uow.session.refresh(extra)
    assert (extra.state, extra.close_reason) == ("withdrawn", "other_accepted")


async def test_a_mentor_accepting_a_withdrawn_proposal_gets_a_clear_answer(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)
    await svc.withdraw_proposal(uow, coordinator, proposal.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.PROPOSAL_WITHDRAWN):
        await svc.accept_proposal(uow, mentor, proposal.id, now=clock.now)

    assert await active_pairs(uow) == []


async def test_accepting_after_another_coordinator_paired_the_mentee_by_hand_is_refused(uow, clock):
    first = await add_coordinator(uow, clock.now)
    second = await add_coordinator(uow, clock.now, "Вторая Ольга Сергеевна")
    mentor = await add_mentor(uow, clock.now)
    other_mentor = await add_mentor(uow, clock.now, "Другая Анна Ивановна")
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, first, mentee, mentor)
    await svc.pair_by_hand(uow, second, mentee.id, other_mentor.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.MENTEE_PAIRED):
        await svc.accept_proposal(uow, mentor, proposal.id, now=clock.now)

    assert [(p.mentee_id, p.mentor_id) for p in await active_pairs(uow)] == [(mentee.id, other_mentor.id)]


async def test_answering_twice_is_refused(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)
    await svc.accept_proposal(uow, mentor, proposal.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.PROPOSAL_ANSWERED):
        await svc.decline_proposal(uow, mentor, proposal.id, now=clock.now)


async def test_someone_elses_proposal_is_not_found(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    stranger = await add_mentor(uow, clock.now, "Чужая Анна Ивановна", SCHOOL_3)
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)

    with pytest.raises(NotFound):
        await svc.accept_proposal(uow, stranger, proposal.id, now=clock.now)


async def test_a_decline_proposes_the_next_best_mentor_to_the_coordinator(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    best = await add_mentor(uow, clock.now, "Лучшая Анна Ивановна", SCHOOL_1, "math_it")
    second = await add_mentor(uow, clock.now, "Вторая Анна Ивановна", SCHOOL_1, "philology")
    await add_mentor(uow, clock.now, "Далёкая Анна Ивановна", SCHOOL_3, "math_it")  # no network: ineligible
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, best)

    new = await svc.decline_proposal(uow, best, proposal.id, now=clock.now)

    assert (new.mentor_id, new.state, new.source) == (second.id, "proposed", "next_best")
    [notice] = await outbox(uow, kind="mentoring.declined")
    assert notice.member_id == coordinator.id and "Вторая Анна Ивановна" in notice.text


async def test_a_decline_with_no_one_left_tells_the_coordinator(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)

    new = await svc.decline_proposal(uow, mentor, proposal.id, now=clock.now)

    assert new is None
    [notice] = await outbox(uow, kind="mentoring.declined")
    assert "вручную" in notice.text


async def test_changing_a_proposal_withdraws_it_and_asks_the_new_mentor(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    first = await add_mentor(uow, clock.now)
    chosen = await add_mentor(uow, clock.now, "Выбранная Анна Ивановна", SCHOOL_1, "philology")
    mentee = await add_mentee(uow, clock.now)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)
    assert proposal.mentor_id == first.id

    new = await svc.change_proposal(uow, coordinator, proposal.id, chosen.id, now=clock.now)

    assert (proposal.state, proposal.close_reason) == ("withdrawn", "changed")
    assert (new.mentor_id, new.state, new.reasons) == (chosen.id, "approved", ["same_school", "same_kind"])
    assert [n.member_id for n in await outbox(uow, kind="mentoring.proposal")] == [chosen.id]
    assert mentee.id == new.mentee_id


async def test_changing_to_a_mentor_who_refuses_other_schools_is_refused(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    await add_mentor(uow, clock.now)
    elsewhere = await add_mentor(uow, clock.now, "Другая Анна Ивановна", SCHOOL_3, network=False)
    await add_mentee(uow, clock.now)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    with pytest.raises(Conflict, match=svc.NO_NETWORK):
        await svc.change_proposal(uow, coordinator, proposal.id, elsewhere.id, now=clock.now)

    assert proposal.state == "proposed"


# ---- pairs by hand, ending, reassigning -----------------------------------------------------


async def test_pairing_by_hand_refuses_a_full_mentor_a_paired_mentee_and_an_exclusion(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now, capacity=1)
    free = await add_mentor(uow, clock.now, "Свободная Анна Ивановна")
    mentee = await add_mentee(uow, clock.now)
    second = await add_mentee(uow, clock.now, "Второва Анна Петровна")
    await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)
    await svc.add_exclusion(uow, free, second.id, now=clock.now)

    with pytest.raises(Conflict, match=svc.MENTOR_FULL):
        await svc.pair_by_hand(uow, coordinator, second.id, mentor.id, now=clock.now)
    with pytest.raises(Conflict, match=svc.MENTEE_PAIRED):
        await svc.pair_by_hand(uow, coordinator, mentee.id, free.id, now=clock.now)
    with pytest.raises(Conflict, match=svc.EXCLUDED):
        await svc.pair_by_hand(uow, coordinator, second.id, free.id, now=clock.now)


async def test_ending_a_pair_twice_gets_a_clear_answer(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    pair = await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)
    await svc.end_pair(uow, coordinator, pair.id, reason="goals_met", now=clock.now)

    with pytest.raises(Conflict, match=svc.PAIR_ENDED):
        await svc.end_pair(uow, coordinator, pair.id, reason="goals_met", now=clock.now)

    assert (pair.end_reason, pair.ended_by) == ("goals_met", coordinator.id)
    assert len(await outbox(uow, kind="mentoring.ended")) == 2


async def test_reassigning_ends_the_old_pair_and_starts_a_new_one(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    old = await add_mentor(uow, clock.now)
    new = await add_mentor(uow, clock.now, "Новая Анна Ивановна")
    mentee = await add_mentee(uow, clock.now)
    first = await svc.pair_by_hand(uow, coordinator, mentee.id, old.id, now=clock.now)

    second = await svc.reassign(uow, coordinator, mentee.id, new.id, now=clock.now)

    assert (first.end_reason, second.mentor_id, second.ended_at) == ("reassigned", new.id, None)
    assert [p.id for p in await active_pairs(uow)] == [second.id]


async def test_the_database_refuses_a_second_active_pair_for_a_mentee(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now, capacity=2)
    mentee = await add_mentee(uow, clock.now)
    await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)

    uow.session.add(MentorPair(municipality_id=mentee.municipality_id, mentor_id=mentor.id, mentee_id=mentee.id,
                               started_at=clock.now))
    with pytest.raises(IntegrityError):
        await uow.flush()


async def test_concurrent_accept_and_manual_pair_leave_the_mentee_one_mentor(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        mentor = await add_mentor(uow, clock.now)
        other = await add_mentor(uow, clock.now, "Другая Анна Ивановна")
        mentee = await add_mentee(uow, clock.now)
        proposal = await approved_proposal(uow, clock.now, coordinator, mentee, mentor)
        await uow.commit()

    async def accept():
        async with db.unit() as uow:
            await svc.accept_proposal(uow, await uow.members.get(mentor.id), proposal.id, now=clock.now)
            await uow.commit()

    async def by_hand():
        async with db.unit() as uow:
            await svc.pair_by_hand(uow, await uow.members.get(coordinator.id), mentee.id, other.id, now=clock.now)
            await uow.commit()

    results = await asyncio.gather(accept(), by_hand(), return_exceptions=True)

    assert sum(r is None for r in results) == 1
    assert [type(r) for r in results if r is not None] == [Conflict]
    async with db.unit() as uow:
        assert len(await active_pairs(uow)) == 1


async def test_concurrent_manual_pairs_never_fill_a_mentor_over_capacity(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        mentor = await add_mentor(uow, clock.now, capacity=1)
        mentees = [await add_mentee(uow, clock.now, f"Педагогова Анна {name}") for name in ("Первая", "Вторая", "Третья")]
        await uow.commit()

    async def by_hand(mentee_id):
        async with db.unit() as uow:
            await svc.pair_by_hand(uow, await uow.members.get(coordinator.id), mentee_id, mentor.id, now=clock.now)
            await uow.commit()

    results = await asyncio.gather(*(by_hand(m.id) for m in mentees), return_exceptions=True)

    assert [str(r) for r in results if r is not None] == [svc.MENTOR_FULL, svc.MENTOR_FULL]
    async with db.unit() as uow:
        assert len(await active_pairs(uow)) == 1


async def test_random_actions_keep_the_pairing_invariants(uow, clock):
    rng = random.Random(5)
    coordinator = await add_coordinator(uow, clock.now)
    mentors = [
        await add_mentor(uow, clock.now, f"Наставникова Анна {i}", rng.choice([SCHOOL_1, SCHOOL_2]),
                         rng.choice(["math_it", "philology"]), capacity=rng.randint(1, 2), network=rng.random() < 0.5,
                         strengths=rng.sample(["methodical", "ict", "subject"], 1))
        for i in range(4)
    ]
    mentees = [
        await add_mentee(uow, clock.now, f"Педагогова Вера {i}", rng.choice([SCHOOL_1, SCHOOL_2]),
                         rng.choice(["math_it", "philology"]), deficits=["methodical"])
        for i in range(7)
    ]
    muni = coordinator.municipality_id
    for _step in range(60):
        live = await svc.proposals_in(uow, coordinator, muni)
        pairs = await active_pairs(uow)
        action = rng.choice(["match", "approve", "accept", "decline", "hand", "end", "reassign", "withdraw"])
        try:
            if action == "match":
                await svc.run_matching(uow, coordinator, muni, now=clock.now)
            elif action in ("approve", "withdraw") and live:
                proposal = rng.choice(live)
                fn = svc.approve_proposal if action == "approve" else svc.withdraw_proposal
                await fn(uow, coordinator, proposal.id, now=clock.now)
            elif action in ("accept", "decline") and live:
                proposal = rng.choice(live)
                mentor = await uow.members.get(proposal.mentor_id)
                fn = svc.accept_proposal if action == "accept" else svc.decline_proposal
                await fn(uow, mentor, proposal.id, now=clock.now)
            elif action == "hand":
                await svc.pair_by_hand(uow, coordinator, rng.choice(mentees).id, rng.choice(mentors).id, now=clock.now)
            elif action == "end" and pairs:
                await svc.end_pair(uow, coordinator, rng.choice(pairs).id, reason="other", now=clock.now)
            elif action == "reassign" and pairs:
                await svc.reassign(uow, coordinator, rng.choice(pairs).mentee_id, rng.choice(mentors).id,
                                   now=clock.now)
        except Conflict:
            pass
        clock.advance(hours=1)

        pairs = await active_pairs(uow)
        per_mentee = [p.mentee_id for p in pairs]
        assert len(per_mentee) == len(set(per_mentee))
        for mentor in mentors:
            capacity = (await svc.mentor_profile(uow, mentor.id)).capacity
            approved = (await uow.session.execute(select(func.count(MentorProposal.id)).where(
                MentorProposal.mentor_id == mentor.id, MentorProposal.state == "approved"))).scalar_one()
            assert sum(p.mentor_id == mentor.id for p in pairs) + approved <= capacity


# ---- meetings -------------------------------------------------------------------------------


@pytest.fixture
async def pair(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    pair = await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)
    clock.advance(days=3)
    return pair


async def _log(uow, clock, pair, *, held_on=None, mentor=None):
    mentor = mentor or await uow.members.get(pair.mentor_id)
    return await svc.log_meeting(
        uow, mentor, pair.id, held_on=held_on or clock.now.date(), duration_min=45, format="in_school",
        activity="consultation", deficits=["methodical"], note="Разобрали план урока", now=clock.now,
    )


async def test_a_logged_meeting_asks_the_mentee_to_confirm(uow, clock, pair):
    meeting = await _log(uow, clock, pair)

    assert (meeting.confirmed, meeting.deficits, meeting.logged_by) == ("pending", ["methodical"], pair.mentor_id)
    [notice] = await outbox(uow, kind="mentoring.confirm")
    assert notice.member_id == pair.mentee_id and clock.now.strftime("%d.%m.%Y") in notice.text


async def test_a_meeting_in_the_future_is_refused(uow, clock, pair):
    with pytest.raises(Conflict, match=svc.MEETING_IN_FUTURE):
        await _log(uow, clock, pair, held_on=clock.now.date() + timedelta(days=1))


async def test_a_meeting_before_the_pair_began_is_refused(uow, clock, pair):
    with pytest.raises(Conflict, match=svc.MEETING_BEFORE_PAIR):
        await _log(uow, clock, pair, held_on=clock.now.date() - timedelta(days=10))


async def test_a_meeting_for_an_ended_pair_is_refused(uow, clock, pair):
    coordinator = (await uow.members.in_municipality(pair.municipality_id, role=Role.COORDINATOR))[0]
    await svc.end_pair(uow, coordinator, pair.id, reason="other", now=clock.now)

    with pytest.raises(Conflict, match=svc.PAIR_ENDED):
        await _log(uow, clock, pair)


async def test_only_the_pairs_mentor_logs_its_meetings(uow, clock, pair):
    stranger = await add_mentor(uow, clock.now, "Чужая Анна Ивановна")

    with pytest.raises(NotFound):
        await _log(uow, clock, pair, mentor=stranger)


async def test_a_correction_within_seven_days_asks_for_confirmation_again(uow, clock, pair):
    meeting = await _log(uow, clock, pair)
    mentee = await uow.members.get(pair.mentee_id)
    await svc.confirm_meeting(uow, mentee, meeting.id, happened=True, now=clock.now)
    clock.advance(days=6)

    await svc.correct_meeting(uow, await uow.members.get(pair.mentor_id), meeting.id, duration_min=90, now=clock.now)

    assert (meeting.duration_min, meeting.confirmed) == (90, "pending")
    assert len(await outbox(uow, kind="mentoring.confirm")) == 2


async def test_a_correction_or_deletion_after_seven_days_is_refused(uow, clock, pair):
    meeting = await _log(uow, clock, pair)
    clock.advance(days=7, minutes=1)
    mentor = await uow.members.get(pair.mentor_id)

    with pytest.raises(Conflict, match=svc.EDIT_WINDOW_PASSED):
        await svc.correct_meeting(uow, mentor, meeting.id, duration_min=90, now=clock.now)
    with pytest.raises(Conflict, match=svc.EDIT_WINDOW_PASSED):
        await svc.delete_meeting(uow, mentor, meeting.id, now=clock.now)


async def test_a_mentor_deletes_their_own_entry(uow, clock, pair):
    meeting = await _log(uow, clock, pair)

    await svc.delete_meeting(uow, await uow.members.get(pair.mentor_id), meeting.id, now=clock.now)

    assert (await uow.session.execute(select(func.count(MentorMeeting.id)))).scalar_one() == 0


async def test_the_mentee_confirms_once_and_a_denial_tells_the_mentor(uow, clock, pair):
    meeting = await _log(uow, clock, pair)
    mentee = await uow.members.get(pair.mentee_id)

    await svc.confirm_meeting(uow, mentee, meeting.id, happened=False, now=clock.now)

    assert meeting.confirmed == "no"
    with pytest.raises(Conflict, match=svc.ALREADY_CONFIRMED):
        await svc.confirm_meeting(uow, mentee, meeting.id, happened=True, now=clock.now)
    [notice] = await outbox(uow, kind="mentoring.denied")
    assert notice.member_id == pair.mentor_id


async def test_both_members_and_the_coordinator_see_the_pair_history_but_no_one_else(uow, clock, pair):
    await _log(uow, clock, pair, held_on=clock.now.date() - timedelta(days=1))
    await _log(uow, clock, pair)
    stranger = await add_mentor(uow, clock.now, "Чужая Анна Ивановна")

    for member_id in (pair.mentor_id, pair.mentee_id):
        history = await svc.pair_history(uow, await uow.members.get(member_id), pair.id)
        assert [m.held_on for m in history] == [clock.now.date(), clock.now.date() - timedelta(days=1)]
    with pytest.raises(Forbidden):
        await svc.pair_history(uow, stranger, pair.id)


async def test_a_message_is_passed_to_the_other_member(uow, clock, pair):
    mentee = await uow.members.get(pair.mentee_id)

    await svc.send_pair_message(uow, mentee, pair.id, "Здравствуйте! Когда удобно встретиться?", now=clock.now)

    [notice] = await outbox(uow, kind="mentoring.message")
    assert notice.member_id == pair.mentor_id and "Когда удобно" in notice.text


# ---- exclusions and requests ----------------------------------------------------------------


async def test_exclusions_are_private_to_who_made_them(uow, clock):
    mentor = await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)

    await svc.add_exclusion(uow, mentee, mentor.id, now=clock.now)
    await svc.add_exclusion(uow, mentee, mentor.id, now=clock.now)

    assert [m.id for m in await svc.exclusions_of(uow, mentee)] == [mentor.id]
    assert await svc.exclusions_of(uow, mentor) == []
    await svc.remove_exclusion(uow, mentee, mentor.id)
    assert await svc.exclusions_of(uow, mentee) == []


async def test_cancelling_a_request_withdraws_its_proposals(uow, clock):
    coordinator = await add_coordinator(uow, clock.now)
    await add_mentor(uow, clock.now)
    mentee = await add_mentee(uow, clock.now)
    [proposal] = await svc.run_matching(uow, coordinator, coordinator.municipality_id, now=clock.now)

    assert await svc.cancel_request(uow, mentee, now=clock.now)

    assert (proposal.state, proposal.close_reason) == ("withdrawn", "request_cancelled")
    assert await svc.open_request(uow, mentee.id) is None


# ---- nudges on a simulated clock ------------------------------------------------------------


async def test_an_idle_pair_reminds_the_mentor_then_the_mentee(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        mentor = await add_mentor(uow, clock.now)
        mentee = await add_mentee(uow, clock.now)
        await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)
        await uow.commit()

    clock.advance(days=13)
    assert await run_nudges(db, clock.now) == 0
    clock.advance(days=1)
    assert await run_nudges(db, clock.now) == 1
    assert await run_nudges(db, clock.now) == 0
    clock.advance(days=3)
    assert await run_nudges(db, clock.now) == 1

    async with db.unit() as uow:
        nudges = await outbox(uow, kind="mentoring.nudge")
    assert [n.member_id for n in nudges] == [mentor.id, mentee.id]
    assert nudges[0].buttons == [["🗓 Записать встречу", "flow:meeting_log"]]
    assert "14 дн." in nudges[0].text


async def test_a_logged_meeting_restarts_the_idle_count(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        mentor = await add_mentor(uow, clock.now)
        mentee = await add_mentee(uow, clock.now)
        pair = await svc.pair_by_hand(uow, coordinator, mentee.id, mentor.id, now=clock.now)
        await uow.commit()
    clock.advance(days=10)
    async with db.unit() as uow:
        await _log(uow, clock, pair)
        await uow.commit()

    clock.advance(days=13)
    assert await run_nudges(db, clock.now) == 0
    clock.advance(days=1)
    assert await run_nudges(db, clock.now) == 1


async def test_the_idle_period_is_a_setting(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        pair = await svc.pair_by_hand(uow, coordinator, (await add_mentee(uow, clock.now)).id,
                                      (await add_mentor(uow, clock.now)).id, now=clock.now)
        await uow.commit()
    clock.advance(days=7)

    assert await run_nudges(db, clock.now, idle_days=7) == 1
    assert pair.id


async def test_a_mentee_waiting_more_than_seven_days_is_flagged_to_the_coordinator_once(db, clock):
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        await add_coordinator(uow, clock.now, "Чужая Ольга Сергеевна", muni="kirovsky-spb")
        await add_mentee(uow, clock.now)
        await uow.commit()

    clock.advance(days=7)
    assert await run_nudges(db, clock.now) == 0
    clock.advance(hours=1)
    assert await run_nudges(db, clock.now) == 1
    clock.advance(days=1)
    assert await run_nudges(db, clock.now) == 0

    async with db.unit() as uow:
        [flag] = await outbox(uow, kind="mentoring.unmatched")
    assert flag.member_id == coordinator.id and "Молодова Мария Петровна" in flag.text


async def test_nudges_wait_for_the_end_of_quiet_hours(db, clock):
    clock.now = clock.now.replace(hour=20)  # 23:00 in Moscow
    async with db.unit() as uow:
        coordinator = await add_coordinator(uow, clock.now)
        await svc.pair_by_hand(uow, coordinator, (await add_mentee(uow, clock.now)).id,
                               (await add_mentor(uow, clock.now)).id, now=clock.now)
        await uow.commit()
    clock.advance(days=14)

    await run_nudges(db, clock.now)

    async with db.unit() as uow:
        [nudge] = await outbox(uow, kind="mentoring.nudge")
    assert nudge.due_at.hour == 5 and nudge.due_at.date() == clock.now.date() + timedelta(days=1)


async def test_date_helper_uses_the_municipality_time_zone(uow, clock):
    municipality = await uow.reference.municipality_by_code("vsevolozhsky")

    assert svc.local_date(clock.now.replace(hour=22), municipality) == clock.now.date() + timedelta(days=1)
    assert isinstance(svc.local_date(clock.now, None), date)

"""The events service on real storage: places and the waiting list, reminders, notices, import, .ics."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select

from storage.models import Account, Member, Role
from storage.models_events import Event, EventFeedback, Registration
from storage.models_outbox import OutboxMessage
from storage.services import events as ev
from storage.services.errors import Conflict, Forbidden

MSK = ZoneInfo("Europe/Moscow")
YEKT = ZoneInfo("Asia/Yekaterinburg")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


async def add_member(uow, role: str = Role.TEACHER, municipality: str = "vsevolozhsky", name: str = "Петрова Анна Ивановна",
                     user_id: int | None = None) -> Member:
    place = await uow.reference.municipality_by_code(municipality)
    member = Member(role=role, full_name=name, municipality_id=place.id, preferred_transport="telegram",
                    mentor_confirmed=role == Role.MENTOR)
    uow.session.add(member)
    await uow.flush()
    uow.session.add(Account(transport="telegram", external_id=str(user_id or 7000 + member.id),
                            chat_id=str(user_id or 7000 + member.id), member_id=member.id))
    await uow.flush()
    return member


async def add_event(uow, coordinator: Member, *, start_local: datetime, hours: int = 2, capacity: int | None = None,
                    type_code: str = "young_teacher_school", title: str = "Школа молодого педагога: сессия 1",
                    deficits=("methodical",), now: datetime = NOW) -> Event:
    start = start_local.astimezone(timezone.utc)
    return await ev.create_event(
        uow, coordinator, municipality_id=coordinator.municipality_id, type_code=type_code, title=title,
        starts_at=start, ends_at=start + timedelta(hours=hours), now=now, place="ВРМЦ, ауд. 12",
        capacity=capacity, deficit_tags=deficits, organiser_contact="metod@example.org",
    )


async def outbox_rows(uow, prefix: str = "") -> list[OutboxMessage]:
    rows = await uow.session.execute(
        select(OutboxMessage).where(OutboxMessage.key.startswith(prefix)).order_by(OutboxMessage.due_at, OutboxMessage.id)
    )
    return list(rows.scalars())


async def state_of(uow, event: Event, member: Member) -> str:
    return (await ev.registration_of(uow, event.id, member.id)).state


# ---- places and the waiting list ----------------------------------------------------------------


async def test_when_the_places_are_taken_the_next_teacher_goes_to_the_waiting_list(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        first, second, third = [await add_member(uow) for _ in range(3)]
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=2)

        await ev.register(uow, first, event.id, now=NOW)
        await ev.register(uow, second, event.id, now=NOW)
        third_registration = await ev.register(uow, third, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        assert [await state_of(uow, event, m) for m in (first, second, third)] == ["going", "going", "waitlist"]
        assert await ev.waitlist_position(uow, third_registration) == 1
        assert await outbox_rows(uow, f"ev:{event.id}:rem:{third.id}:") == []
        assert (await ev.seats(uow, event)).full


async def test_a_freed_place_goes_to_the_first_in_the_waiting_list_who_is_told_and_reminded(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        going, waiting_first, waiting_second = [await add_member(uow) for _ in range(3)]
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=1)
        await ev.register(uow, going, event.id, now=NOW)
        await ev.register(uow, waiting_first, event.id, now=NOW + timedelta(minutes=1))
        await ev.register(uow, waiting_second, event.id, now=NOW + timedelta(minutes=2))

        await ev.withdraw(uow, going, event.id, now=NOW + timedelta(hours=1))
        await uow.commit()

    async with db.unit() as uow:
        assert [await state_of(uow, event, m) for m in (going, waiting_first, waiting_second)] == [
            "withdrawn", "going", "waitlist"]
        notice = await outbox_rows(uow, f"ev:{event.id}:promo:{waiting_first.id}:")
        assert len(notice) == 1 and notice[0].text.startswith("Освободилось место")
        assert len(await outbox_rows(uow, f"ev:{event.id}:rem:{waiting_first.id}:")) == 3
        assert {row.state for row in await outbox_rows(uow, f"ev:{event.id}:rem:{going.id}:")} == {"cancelled"}


async def test_registering_twice_keeps_one_place_and_one_set_of_reminders(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=5)

        await ev.register(uow, teacher, event.id, now=NOW)
        await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        rows = (await uow.session.execute(select(Registration))).scalars().all()
        assert len(rows) == 1 and (await ev.seats(uow, event)).going == 1
        assert len(await outbox_rows(uow, f"ev:{event.id}:rem:")) == 3


async def test_coming_back_after_withdrawing_gets_fresh_reminders(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))
        await ev.register(uow, teacher, event.id, now=NOW)
        await ev.withdraw(uow, teacher, event.id, now=NOW)

        await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        rows = await outbox_rows(uow, f"ev:{event.id}:rem:{teacher.id}:")
        assert sorted(row.state for row in rows) == ["cancelled"] * 3 + ["pending"] * 3


async def test_a_teacher_cannot_register_for_an_event_of_another_municipality_or_for_mentors_only(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        stranger = await add_member(uow, municipality="novotroitsk")
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))
        for_mentors = await add_event(uow, coordinator, start_local=datetime(2026, 12, 11, 15, 0, tzinfo=MSK))
        await ev.edit_event(uow, coordinator, for_mentors.id, {"audience": "mentors"}, now=NOW)

        with pytest.raises(Forbidden):
            await ev.register(uow, stranger, event.id, now=NOW)
        with pytest.raises(Forbidden):
            await ev.register(uow, teacher, for_mentors.id, now=NOW)
        assert [e.id for e in await ev.upcoming_events(uow, teacher, NOW)] == [event.id]


async def test_an_event_for_preschool_teachers_is_listed_for_them_and_not_for_school_teachers(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        school, kindergarten = await add_member(uow), await add_member(uow)
        kindergarten.subject_area = "preschool"
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))
        await ev.edit_event(uow, coordinator, event.id, {"audience": "preschool"}, now=NOW)

        listed = [await ev.upcoming_events(uow, member, NOW) for member in (school, kindergarten, coordinator)]

    assert [[e.id for e in events] for events in listed] == [[], [event.id], [event.id]]


async def test_only_a_coordinator_of_that_municipality_creates_events(db):
    async with db.unit() as uow:
        teacher = await add_member(uow)
        other_coordinator = await add_member(uow, Role.COORDINATOR, municipality="novotroitsk")
        start = datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)

        for actor in (teacher, other_coordinator):
            with pytest.raises(Forbidden):
                await ev.create_event(
                    uow, actor, municipality_id=teacher.municipality_id, type_code="club", title="Встреча клуба",
                    starts_at=start, ends_at=start + timedelta(hours=1), now=NOW, place="ВРМЦ",
                )


# ---- reminders on a simulated clock, quiet hours in two timezones ------------------------------


def due_at(rows: list[OutboxMessage], zone: ZoneInfo) -> list[str]:
    return [row.due_at.astimezone(zone).strftime("%d.%m %H:%M") for row in rows]


async def test_reminders_come_7_days_1_day_and_2_hours_before_in_local_time(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))

        await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        rows = await outbox_rows(uow, f"ev:{event.id}:rem:")
    assert due_at(rows, MSK) == ["03.12 15:00", "09.12 15:00", "10.12 13:00"]
    assert rows[0].text.startswith("Напоминание: через 7 дней, 10 декабря в 15:00 — «Школа молодого педагога")
    assert rows[1].text.startswith("Напоминание: завтра в 15:00")
    assert rows[2].text.startswith("Напоминание: сегодня в 15:00")
    assert "Место: ВРМЦ, ауд. 12" in rows[2].text
    assert rows[0].buttons == [["📅 Мероприятия", "flow:events"]]


@pytest.mark.parametrize(("municipality", "zone"), [("vsevolozhsky", MSK), ("novotroitsk", YEKT)])
async def test_reminders_in_quiet_hours_wait_for_the_local_morning(db, municipality, zone):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR, municipality=municipality)
        teacher = await add_member(uow, municipality=municipality)
        # 09:00 start: the 2-hour reminder (07:00) waits until 08:00; 23:30 start: the day-before one too.
        morning = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 9, 0, tzinfo=zone))
        late = await add_event(uow, coordinator, start_local=datetime(2026, 12, 12, 23, 30, tzinfo=zone), hours=1)

        await ev.register(uow, teacher, morning.id, now=NOW)
        await ev.register(uow, teacher, late.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        assert due_at(await outbox_rows(uow, f"ev:{morning.id}:rem:"), zone) == ["03.12 09:00", "09.12 09:00", "10.12 08:00"]
        late_rows = await outbox_rows(uow, f"ev:{late.id}:rem:")
        assert due_at(late_rows, zone) == ["06.12 08:00", "12.12 08:00", "12.12 21:30"]
        assert all(8 <= row.due_at.astimezone(zone).hour < 22 for row in late_rows)
        assert late_rows[1].text.startswith("Напоминание: сегодня в 23:30")


async def test_on_a_simulated_clock_each_reminder_becomes_due_only_at_its_time(db, clock):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 9, 0, tzinfo=MSK), now=clock.now)
        await ev.register(uow, teacher, event.id, now=clock.now)
        await uow.commit()

    async def due_now() -> int:
        async with db.unit() as uow:
            return len([row for row in await outbox_rows(uow, f"ev:{event.id}:rem:") if row.due_at <= clock.now])

    counts = []
    for moment in (datetime(2026, 12, 3, 8, 59, tzinfo=MSK), datetime(2026, 12, 3, 9, 0, tzinfo=MSK),
                   datetime(2026, 12, 10, 7, 30, tzinfo=MSK), datetime(2026, 12, 10, 8, 0, tzinfo=MSK)):
        clock.now = moment.astimezone(timezone.utc)
        counts.append(await due_now())
    assert counts == [0, 1, 2, 3]


async def test_registering_close_to_the_start_queues_only_the_reminders_still_ahead(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 11, 28, 15, 0, tzinfo=MSK))

        await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        assert due_at(await outbox_rows(uow, f"ev:{event.id}:rem:"), MSK) == ["27.11 15:00", "28.11 13:00"]


async def test_reminder_offsets_are_configurable_per_event_type(db):
    async with db.unit() as uow:
        club = await ev.event_type_by_code(uow, "club")
        club.reminder_offsets = [24 * 60]
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, type_code="club", start_local=datetime(2026, 12, 10, 18, 0, tzinfo=MSK))

        await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        assert due_at(await outbox_rows(uow, f"ev:{event.id}:rem:"), MSK) == ["09.12 18:00"]


# ---- changes and cancellations ------------------------------------------------------------------


async def test_a_new_time_is_told_to_everyone_registered_and_the_reminders_move(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        going, waiting = await add_member(uow), await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=1)
        await ev.register(uow, going, event.id, now=NOW)
        await ev.register(uow, waiting, event.id, now=NOW)
        new_start = datetime(2026, 12, 11, 16, 0, tzinfo=MSK).astimezone(timezone.utc)

        await ev.edit_event(uow, coordinator, event.id, {"starts_at": new_start, "ends_at": new_start + timedelta(hours=2)},
                            now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        notices = await outbox_rows(uow, f"ev:{event.id}:chg:")
        reminders = await outbox_rows(uow, f"ev:{event.id}:rem:")
    assert sorted(row.member_id for row in notices) == sorted([going.id, waiting.id])
    assert all(row.due_at == NOW and "11 декабря 2026, 16:00–18:00" in row.text for row in notices)
    assert due_at([r for r in reminders if r.state == "pending"], MSK) == ["04.12 16:00", "10.12 16:00", "11.12 14:00"]
    assert {r.state for r in reminders if r.due_at.astimezone(MSK).hour == 15 or r.due_at.astimezone(MSK).hour == 13} == {
        "cancelled"}


async def test_a_cancellation_is_told_to_everyone_registered_and_drops_pending_reminders(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        going, waiting, bystander = await add_member(uow), await add_member(uow), await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=1)
        await ev.register(uow, going, event.id, now=NOW)
        await ev.register(uow, waiting, event.id, now=NOW)

        await ev.cancel_event(uow, coordinator, event.id, now=NOW)
        await uow.commit()

    async with db.unit() as uow:
        notices = await outbox_rows(uow, f"ev:{event.id}:cancel:")
        reminders = await outbox_rows(uow, f"ev:{event.id}:rem:")
        assert sorted(row.member_id for row in notices) == sorted([going.id, waiting.id])
        assert notices[0].text.startswith("Мероприятие «Школа молодого педагога: сессия 1» (10 декабря 2026, 15:00–17:00) отменено")
        assert {row.state for row in reminders} == {"cancelled"}
        assert await ev.upcoming_events(uow, bystander, NOW) == []
        with pytest.raises(Conflict):
            await ev.register(uow, bystander, event.id, now=NOW)


async def test_a_cancellation_at_night_waits_for_the_morning_unless_the_event_is_earlier(db):
    night = datetime(2026, 12, 1, 23, 0, tzinfo=MSK).astimezone(timezone.utc)
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        later = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))
        dawn = await add_event(uow, coordinator, start_local=datetime(2026, 12, 2, 7, 30, tzinfo=MSK), title="Выезд")
        for event in (later, dawn):
            await ev.register(uow, teacher, event.id, now=NOW)

        await ev.cancel_event(uow, coordinator, later.id, now=night)
        await ev.cancel_event(uow, coordinator, dawn.id, now=night)
        await uow.commit()

    async with db.unit() as uow:
        assert due_at(await outbox_rows(uow, f"ev:{later.id}:cancel:"), MSK) == ["02.12 08:00"]
        assert due_at(await outbox_rows(uow, f"ev:{dawn.id}:cancel:"), MSK) == ["01.12 23:00"]


async def test_copying_an_event_keeps_its_details_at_a_new_date_without_registrations(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK), capacity=7)
        await ev.register(uow, teacher, event.id, now=NOW)
        new_start = datetime(2027, 2, 4, 15, 0, tzinfo=MSK).astimezone(timezone.utc)

        copy = await ev.copy_event(uow, coordinator, event.id, starts_at=new_start, now=NOW)
        await uow.commit()

    assert (copy.title, copy.capacity, copy.place, copy.deficit_tags) == (event.title, 7, event.place, ["methodical"])
    assert copy.ends_at - copy.starts_at == timedelta(hours=2) and copy.starts_at == new_start
    async with db.unit() as uow:
        assert (await ev.seats(uow, copy)).going == 0


async def test_subscribers_of_a_type_hear_of_a_new_event_in_their_municipality(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        subscriber, other = await add_member(uow), await add_member(uow)
        far = await add_member(uow, municipality="novotroitsk")
        for member in (subscriber, far):
            await ev.set_subscriptions(uow, member, ["club"], now=NOW)
        await ev.set_subscriptions(uow, other, ["debut"], now=NOW)

        event = await add_event(uow, coordinator, type_code="club", title="Клуб: встреча",
                                start_local=datetime(2026, 11, 26, 23, 0, tzinfo=MSK) + timedelta(days=3))
        await uow.commit()

    async with db.unit() as uow:
        rows = await outbox_rows(uow, f"ev:{event.id}:ann:")
    assert [row.member_id for row in rows] == [subscriber.id]
    assert rows[0].text.startswith("Новое мероприятие: «Клуб: встреча» (Клуб молодых педагогов).")


# ---- «Для вас» and after the event ----------------------------------------------------------------


async def test_for_you_lists_first_the_events_that_address_the_reported_deficits(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        teacher = await add_member(uow)
        soon = await add_event(uow, coordinator, title="ИКТ на уроке", deficits=["ict"],
                               start_local=datetime(2026, 12, 5, 15, 0, tzinfo=MSK))
        later = await add_event(uow, coordinator, title="Дисциплина", deficits=["psychological", "communicative"],
                                start_local=datetime(2026, 12, 20, 15, 0, tzinfo=MSK))

        async def reported(_uow, _member):
            return {"psychological"}

        ranked = await ev.for_you(uow, teacher, NOW, deficits=reported)

    assert [(event.id, groups) for event, groups in ranked] == [(later.id, ["psychological"]), (soon.id, [])]


async def test_after_the_event_participants_are_asked_once_and_feedback_is_stored(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        came, missed = await add_member(uow), await add_member(uow)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 11, 30, 15, 0, tzinfo=MSK))
        for member in (came, missed):
            await ev.register(uow, member, event.id, now=NOW)
        after = datetime(2026, 11, 30, 23, 0, tzinfo=MSK).astimezone(timezone.utc)

        assert await ev.queue_followups(uow, now=after) == 2
        assert await ev.queue_followups(uow, now=after + timedelta(minutes=5)) == 0
        assert [e.id for e in await ev.pending_feedback(uow, came, after)] == [event.id]
        await ev.record_attendance(uow, came, event.id, True, now=after)
        await ev.record_attendance(uow, missed, event.id, False, now=after)
        await ev.save_feedback(uow, came, event.id, answers={"content": "positive", "organisation": "unsure",
                                                               "usefulness": "positive", "recommend": "positive"},
                               comment="Больше практики", deficit_groups=["methodical"], deficit_still_strong="weaker",
                               now=after)
        await uow.commit()

    async with db.unit() as uow:
        questions = await outbox_rows(uow, f"ev:{event.id}:after:")
        feedback = (await uow.session.execute(select(EventFeedback))).scalar_one()
        summary = await ev.attendance(uow, event.id)
        assert await ev.pending_feedback(uow, came, after) == []
    assert due_at(questions, MSK) == ["01.12 08:00", "01.12 08:00"]
    assert questions[0].buttons == [["Ответить", "flow:event_feedback"]]
    assert (feedback.answers["organisation"], feedback.deficit_still_strong, feedback.comment) == (
        "unsure", "weaker", "Больше практики")
    assert (summary.going, summary.attended, summary.absent, summary.feedback) == (2, 1, 1, 1)
    assert summary.deficit == {"weaker": 1}


# ---- .ics and import --------------------------------------------------------------------------------


async def test_the_ics_file_holds_the_event_in_utc_with_place_and_organiser(db):
    async with db.unit() as uow:
        coordinator = await add_member(uow, Role.COORDINATOR)
        event = await add_event(uow, coordinator, start_local=datetime(2026, 12, 10, 15, 0, tzinfo=MSK))

        data = ev.event_ics(event, now=NOW)

    entry = next(iter(Calendar.from_ical(data).walk("VEVENT")))
    assert entry["dtstart"].dt == datetime(2026, 12, 10, 12, 0, tzinfo=timezone.utc)
    assert entry["dtend"].dt == datetime(2026, 12, 10, 14, 0, tzinfo=timezone.utc)
    assert (str(entry["summary"]), str(entry["location"])) == ("Школа молодого педагога: сессия 1", "ВРМЦ, ауд. 12")
    assert "metod@example.org" in str(entry["description"]) and str(entry["uid"]) == f"event-{event.id}@mms-bot"


CSV_OK = """type;title;start;end;place;online_url;audience;capacity;deficits;organiser
young_teacher_school;ШМП: сессия 2;15.01.2027 15:00;17:00;ВРМЦ;;;30;methodical,psychological;metod@example.org
Клуб молодых педагогов;Встреча клуба;20.01.2027 18:00;20.01.2027 20:00;;https://example.org/meet;молодые педагоги;;;
"""


async def test_a_csv_import_creates_events_in_the_municipalitys_time_and_a_second_run_skips_them(db, tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_text(CSV_OK, encoding="utf-8")
    async with db.unit() as uow:
        first = await ev.import_events(uow, path, "novotroitsk", NOW)
        await uow.commit()
    async with db.unit() as uow:
        second = await ev.import_events(uow, path, "novotroitsk", NOW)
        await uow.commit()

    async with db.unit() as uow:
        events = (await uow.session.execute(select(Event).order_by(Event.starts_at))).scalars().all()
    assert (first.created, second.created, second.skipped) == (2, 0, 2)
    assert events[0].starts_at == datetime(2027, 1, 15, 15, 0, tzinfo=YEKT).astimezone(timezone.utc)
    assert events[0].ends_at - events[0].starts_at == timedelta(hours=2)
    assert (events[0].capacity, events[0].deficit_tags, events[0].audience) == (30, ["methodical", "psychological"],
                                                                                "young_teachers")
    assert (events[1].event_type.code, events[1].online_url, events[1].place) == ("club", "https://example.org/meet", None)


CSV_BAD = """type;title;start;end;place;capacity;deficits
seminar;Хорошая строка;15.01.2027 15:00;17:00;ВРМЦ;;
excursion;Неизвестный тип;16.01.2027 15:00;17:00;ВРМЦ;;
seminar;Без места;17.01.2027 15:00;17:00;;;
seminar;Плохая дата;32.01.2027 15:00;17:00;ВРМЦ;;
seminar;Конец раньше начала;18.01.2027 15:00;14:00;ВРМЦ;;
seminar;Места;19.01.2027 15:00;17:00;ВРМЦ;много;
seminar;Дефицит;20.01.2027 15:00;17:00;ВРМЦ;;magic
seminar;В прошлом;01.01.2020 15:00;17:00;ВРМЦ;;
"""


async def test_an_import_with_invalid_rows_reports_each_by_line_and_imports_nothing(db, tmp_path):
    path = tmp_path / "calendar.csv"
    path.write_text(CSV_BAD, encoding="utf-8")

    async with db.unit() as uow:
        with pytest.raises(ev.EventImportError) as caught:
            await ev.import_events(uow, path, "vsevolozhsky", NOW)
        await uow.commit()

    assert [problem.line for problem in caught.value.problems] == [3, 4, 5, 6, 7, 8, 9]
    messages = [problem.message for problem in caught.value.problems]
    assert "unknown event type" in messages[0] and "place" in messages[1] and "start" in messages[2]
    assert "end must be after" in messages[3] and "capacity" in messages[4] and "magic" in messages[5]
    assert "past" in messages[6]
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Event))).scalars().all() == []


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//example//calendar//RU
BEGIN:VEVENT
UID:smart-2027-winter@example.org
SUMMARY:«Умные каникулы»: зимняя сессия
CATEGORIES:Умные каникулы
DTSTART;TZID=Europe/Moscow:20270105T100000
DTEND;TZID=Europe/Moscow:20270105T160000
LOCATION:Гимназия № 4, Мурино
X-MMS-CAPACITY:40
X-MMS-DEFICITS:subject
ORGANIZER:mailto:metod@example.org
END:VEVENT
BEGIN:VEVENT
UID:online-1@example.org
SUMMARY:Вебинар для наставников
DTSTART:20270110T120000Z
DURATION:PT1H30M
LOCATION:https://example.org/webinar
X-MMS-AUDIENCE:mentors
END:VEVENT
END:VCALENDAR
"""


async def test_an_ics_import_reads_types_times_links_and_extra_fields(db, tmp_path):
    path = tmp_path / "calendar.ics"
    path.write_text(ICS, encoding="utf-8")

    async with db.unit() as uow:
        report = await ev.import_events(uow, path, "vsevolozhsky", NOW)
        await uow.commit()

    async with db.unit() as uow:
        events = (await uow.session.execute(select(Event).order_by(Event.starts_at))).scalars().all()
    assert report.created == 2
    smart, webinar = events
    assert (smart.event_type.code, smart.capacity, smart.deficit_tags, smart.organiser_contact) == (
        "smart_holidays", 40, ["subject"], "metod@example.org")
    assert smart.starts_at == datetime(2027, 1, 5, 7, 0, tzinfo=timezone.utc)
    assert (webinar.event_type.code, webinar.audience, webinar.online_url, webinar.place) == (
        "seminar", "mentors", "https://example.org/webinar", None)
    assert webinar.ends_at - webinar.starts_at == timedelta(minutes=90)


async def test_an_ics_import_names_the_line_of_a_broken_event(db, tmp_path):
    broken = ICS.replace("DTSTART:20270110T120000Z\n", "DTSTART;VALUE=DATE:20270110\n")
    path = tmp_path / "calendar.ics"
    path.write_text(broken, encoding="utf-8")

    async with db.unit() as uow:
        with pytest.raises(ev.EventImportError) as caught:
            await ev.import_events(uow, path, "vsevolozhsky", NOW)

    assert [problem.line for problem in caught.value.problems] == [15]  # its BEGIN:VEVENT
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Event))).scalars().all() == []

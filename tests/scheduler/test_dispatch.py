"""The outbox dispatcher against the Telegram emulator (real aiogram Bot + TelegramSender), limits lifted."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.jobs import DISPATCH_JOB, EVENTS_AFTER_JOB, build_scheduler
from scheduler.senders import TelegramSender
from storage.models import Account, Member, Role
from storage.models_outbox import OutboxMessage
from storage.services import events as ev
from storage.services import outbox

pytestmark = pytest.mark.timeout(60)

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)
EVENT_START = datetime(2026, 12, 10, 15, 0, tzinfo=MSK)
QUIET = outbox.parse_quiet_hours("22:00-08:00")


class SimulatedCrash(RuntimeError):
    """Stands for the process dying right after the k-th outcome was recorded."""


@pytest.fixture
async def tg(emulator):
    """The session's emulator (tests/conftest.py), emptied so that counts are this test's own."""
    await emulator.clear()
    yield emulator
    await emulator._close_http()


@pytest.fixture
async def broadcaster(tg):
    bot = tg.make_bot()
    unlimited = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)},
                            concurrency=16, backoff_base=0.01, backoff_max=0.05, retry_after_margin=0.0)
    yield unlimited
    await unlimited.close()
    await bot.session.close()


async def add_member(uow, chat_id: int, role: str = Role.TEACHER) -> Member:
    place = await uow.reference.municipality_by_code("vsevolozhsky")
    member = Member(role=role, full_name="Сидорова Ольга Павловна", municipality_id=place.id,
                    preferred_transport="telegram")
    uow.session.add(member)
    await uow.flush()
    uow.session.add(Account(transport="telegram", external_id=str(chat_id), chat_id=str(chat_id), member_id=member.id))
    await uow.flush()
    return member


async def registered_teachers(db, count: int, *, first_chat: int = 50_001) -> tuple[int, list[int]]:
    """An event with `count` teachers registered: 3 reminders each in the outbox. Returns (event id, chat ids)."""
    async with db.unit() as uow:
        coordinator = await add_member(uow, 49_999, Role.COORDINATOR)
        start = EVENT_START.astimezone(timezone.utc)
        event = await ev.create_event(
            uow, coordinator, municipality_id=coordinator.municipality_id, type_code="young_teacher_school",
            title="Школа молодого педагога", starts_at=start, ends_at=start + timedelta(hours=2), now=NOW,
            place="ВРМЦ",
        )
        chats = list(range(first_chat, first_chat + count))
        for chat_id in chats:
            teacher = await add_member(uow, chat_id)
            await ev.register(uow, teacher, event.id, now=NOW)
        await uow.commit()
    return event.id, chats


async def run_until_idle(db, broadcaster, now, **kwargs) -> int:
    total = 0
    while (report := await dispatch_due(db, broadcaster, now, **kwargs)).claimed:
        total += report.claimed
    return total


async def delivered(tg) -> Counter:
    return Counter((str(m.chat_id), m.content) for m in await tg.all_messages())


async def states(db) -> Counter:
    async with db.unit() as uow:
        return Counter((await uow.session.execute(select(OutboxMessage.state))).scalars())


AFTER_ALL_REMINDERS = (EVENT_START - timedelta(minutes=30)).astimezone(timezone.utc)


async def test_every_due_reminder_is_delivered_exactly_once(db, tg, broadcaster):
    _, chats = await registered_teachers(db, 20)

    claimed = await run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS, batch=25)
    again = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=5))

    seen = await delivered(tg)
    assert claimed == 60 and again.claimed == 0
    assert sum(seen.values()) == 60 and set(seen.values()) == {1}
    assert {chat for chat, _ in seen} == {str(chat) for chat in chats}
    assert await states(db) == Counter({"sent": 60})


async def test_only_the_reminders_due_by_the_clock_are_sent(db, tg, broadcaster):
    await registered_teachers(db, 3)

    week_before = (EVENT_START - timedelta(days=7)).astimezone(timezone.utc)
    await run_until_idle(db, broadcaster, week_before)

    texts = [m.content for m in await tg.all_messages()]
    assert len(texts) == 3 and all(text.startswith("Напоминание: через 7 дней") for text in texts)
    assert await states(db) == Counter({"pending": 6, "sent": 3})


async def test_a_crash_in_the_middle_of_a_broadcast_then_a_restart_delivers_every_reminder_once(db, tg, broadcaster):
    await registered_teachers(db, 15)
    recorded = 0

    async def crash_after_seven(_msg, _outcome) -> None:
        nonlocal recorded
        recorded += 1
        if recorded >= 7:
            raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS, on_recorded=crash_after_seven)
    halfway = sum((await delivered(tg)).values())
    await run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS)

    seen = await delivered(tg)
    assert 7 <= halfway < 45
    assert sum(seen.values()) == 45 and set(seen.values()) == {1}
    assert await states(db) == Counter({"sent": 45})


async def test_rows_left_sending_by_a_killed_process_go_back_to_pending_after_the_lease(db, tg, broadcaster):
    await registered_teachers(db, 2)
    async with db.unit() as uow:
        rows = (await uow.session.execute(select(OutboxMessage))).scalars().all()
        for row in rows[:4]:
            row.state, row.sent_at = "sending", AFTER_ALL_REMINDERS  # claimed, then the process died
        await uow.commit()

    early = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=1))
    late = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=11))

    assert (early.claimed, late.released, late.claimed) == (2, 4, 4)
    assert sum((await delivered(tg)).values()) == 6


async def test_rows_in_flight_when_their_process_died_are_uncertain_and_never_sent_twice(db, tg, broadcaster):
    await registered_teachers(db, 2)
    async with db.unit() as uow:
        rows = (await uow.session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        rows[0].state, rows[0].sent_at, rows[0].transport = "attempting", AFTER_ALL_REMINDERS, "telegram"
        rows[1].state, rows[1].sent_at, rows[1].transport = "attempting", AFTER_ALL_REMINDERS, "vk"
        rows[2].state, rows[2].sent_at = "sending", AFTER_ALL_REMINDERS  # claimed, never handed to Telegram
        await uow.commit()
        ids = [row.id for row in rows[:3]]

    early = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=1))
    late = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=11))

    async with db.unit() as uow:
        after = dict((await uow.session.execute(
            select(OutboxMessage.id, OutboxMessage.state).where(OutboxMessage.id.in_(ids))
        )).all())
    # Telegram cannot be asked whether it got the first one: it is not sent again. VK drops a
    # repeated random_id, so the second goes back to pending (and out through Telegram here, the
    # member's only account); the third was never attempted and goes out once.
    assert (early.claimed, late.released, late.uncertain, late.claimed) == (3, 2, 1, 2)
    assert late.by_transport[("telegram", "uncertain")] == 1 and late.by_transport[("telegram", "sent")] == 2
    assert after == {ids[0]: "uncertain", ids[1]: "sent", ids[2]: "sent"}
    assert sum((await delivered(tg)).values()) == 5


async def test_claims_of_a_process_that_is_gone_are_taken_over_at_once_without_the_lease(db, tg, broadcaster):
    await registered_teachers(db, 2)
    async with db.unit() as uow:
        rows = (await uow.session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()
        claims = [("sending", "gone"), ("attempting", "gone"), ("sending", "alive"), ("pending", None)]
        for row, (state, owner) in zip(rows, claims):
            row.state, row.claimed_by = state, owner
            row.sent_at = AFTER_ALL_REMINDERS if owner else None  # claimed a minute ago: the lease is far
            row.transport = "telegram" if owner else None
        await uow.commit()
        ids = [row.id for row in rows[:4]]

    report = await dispatch_due(db, broadcaster, AFTER_ALL_REMINDERS + timedelta(minutes=1),
                                owner="me", gone_owners=lambda: {"gone"})

    async with db.unit() as uow:
        after = {row.id: (row.state, row.claimed_by) for row in (await uow.session.execute(
            select(OutboxMessage).where(OutboxMessage.id.in_(ids))
        )).scalars()}
    assert after == {
        ids[0]: ("sent", "me"),  # the dead process never attempted it: sent once, now
        ids[1]: ("uncertain", None),  # it was in flight when that process died: not again
        ids[2]: ("sending", "alive"),  # a live process's claim is left alone
        ids[3]: ("sent", "me"),
    }
    assert (report.released, report.uncertain) == (1, 1)
    assert sum((await delivered(tg)).values()) == 2 + 2  # the two above and the two untouched reminders


async def test_a_claim_taken_over_meanwhile_is_withdrawn_not_sent(db, tg):
    from scheduler.broadcaster import Outgoing

    await registered_teachers(db, 1)
    sent: list[str] = []

    class TheftOnFirstSend:
        """While the first message goes out, another process takes over the second one's claim."""

        transport = "telegram"

        async def send(self, msg: Outgoing) -> str:
            if not sent:
                async with db.unit() as uow:
                    second = (await uow.session.execute(
                        select(OutboxMessage).where(OutboxMessage.key != msg.key, OutboxMessage.state == "sending")
                        .order_by(OutboxMessage.id).limit(1)
                    )).scalar_one()
                    second.claimed_by = "thief"
                    await uow.commit()
            sent.append(msg.key)
            return "1"

    one_at_a_time = Broadcaster({"telegram": TheftOnFirstSend()}, {"telegram": RateLimit(per_second=math.inf)},
                                concurrency=1)
    try:
        report = await dispatch_due(db, one_at_a_time, AFTER_ALL_REMINDERS, owner="me", gone_owners=lambda: set())
    finally:
        await one_at_a_time.close()
    assert len(sent) == 2 and report.withdrawn == 1 and report.sent == 2
    async with db.unit() as uow:
        thieved = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.claimed_by == "thief"))).scalar_one()
    assert thieved.key not in sent and thieved.state == "sending"  # left to its new owner, untouched


async def test_a_row_is_marked_attempting_and_committed_before_its_platform_call(db, tg):
    from scheduler.broadcaster import Outgoing

    await registered_teachers(db, 3)
    seen_states: list[str] = []

    class Observing:
        """A platform that reads the row's committed state (from another connection) when called."""

        transport = "telegram"

        async def send(self, msg: Outgoing) -> str:
            async with db.unit() as uow:
                seen_states.append((await uow.session.execute(
                    select(OutboxMessage.state).where(OutboxMessage.key == msg.key)
                )).scalar_one())
            return "1"

    observing = Broadcaster({"telegram": Observing()}, {"telegram": RateLimit(per_second=math.inf)}, concurrency=4)
    try:
        report = await dispatch_due(db, observing, AFTER_ALL_REMINDERS)
    finally:
        await observing.close()
    assert report.sent == 9 and seen_states == ["attempting"] * 9
    assert await states(db) == Counter({"sent": 9})


async def test_a_user_who_blocked_the_bot_is_marked_unreachable_and_not_written_to_again(db, tg, broadcaster):
    _, chats = await registered_teachers(db, 3)
    blocked = chats[1]
    await tg.inject_failure("sendMessage", 403, chat_id=blocked, times=None)
    week_before = (EVENT_START - timedelta(days=7)).astimezone(timezone.utc)

    await run_until_idle(db, broadcaster, week_before)
    await run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS)

    async with db.unit() as uow:
        account = (await uow.session.execute(select(Account).where(Account.chat_id == str(blocked)))).scalar_one()
        rows = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.member_id == account.member_id))).scalars().all()
    assert account.unreachable_at == week_before
    assert sorted(row.state for row in rows) == ["unreachable"] * 3
    assert len(await tg.calls("sendMessage", chat_id=blocked)) == 1
    assert await states(db) == Counter({"sent": 6, "unreachable": 3})


async def test_a_429_pauses_the_broadcast_and_each_message_still_goes_once(db, tg, broadcaster):
    await registered_teachers(db, 4)
    await tg.inject_failure("sendMessage", 429, retry_after=1, times=1)

    await run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS)

    seen = await delivered(tg)
    assert sum(seen.values()) == 12 and set(seen.values()) == {1}


async def test_outbox_buttons_reach_telegram_as_go_callbacks_and_the_text_is_plain(db, tg, broadcaster):
    async with db.unit() as uow:
        member = await add_member(uow, 60_001)
        await outbox.enqueue(uow, key="test:plain", kind="test", member_id=member.id, text="Оценки < 3 и > 4 & «кавычки»",
                             due_at=NOW, buttons=[["Ответить", "flow:event_feedback"]])
        await uow.commit()

    await dispatch_due(db, broadcaster, NOW)

    message = (await tg.all_messages())[0]
    assert message.content == "Оценки < 3 и > 4 & «кавычки»"
    assert message.button("Ответить")["callback_data"] == "go:event_feedback"


async def test_a_backlog_found_in_quiet_hours_waits_for_the_morning_but_a_deliberate_night_notice_goes(db, tg, broadcaster):
    evening = datetime(2026, 12, 1, 21, 0, tzinfo=MSK).astimezone(timezone.utc)
    night = datetime(2026, 12, 1, 23, 0, tzinfo=MSK).astimezone(timezone.utc)
    async with db.unit() as uow:
        member = await add_member(uow, 60_002)
        await outbox.enqueue(uow, key="test:evening", kind="test", member_id=member.id, text="Вечернее", due_at=evening)
        await outbox.enqueue(uow, key="test:urgent", kind="test", member_id=member.id, text="Срочное", due_at=night)
        await uow.commit()

    report = await dispatch_due(db, broadcaster, night, quiet=QUIET)

    async with db.unit() as uow:
        waiting = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.key == "test:evening"))).scalar_one()
    assert (report.deferred, report.sent) == (1, 1)
    assert [m.content for m in await tg.all_messages()] == ["Срочное"]
    assert waiting.state == "pending" and waiting.due_at.astimezone(MSK).strftime("%d.%m %H:%M") == "02.12 08:00"


async def test_two_dispatchers_at_once_never_send_the_same_row(db, tg, broadcaster):
    await registered_teachers(db, 20)
    bot = tg.make_bot()
    second = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})

    try:
        await asyncio.gather(
            run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS, batch=10),
            run_until_idle(db, second, AFTER_ALL_REMINDERS, batch=10),
        )
    finally:
        await second.close()
        await bot.session.close()

    seen = await delivered(tg)
    assert sum(seen.values()) == 60 and set(seen.values()) == {1}


async def test_the_scheduler_runs_the_dispatch_job_on_its_fixed_id(db, tg, broadcaster, clock):
    await registered_teachers(db, 2)
    async with db.unit() as uow:  # a row left `sending` by a previous process of this SQLite/PG database
        row = (await uow.session.execute(select(OutboxMessage).limit(1))).scalar_one()
        row.state, row.sent_at = "sending", NOW
        await uow.commit()
    clock.now = AFTER_ALL_REMINDERS

    class Settings:
        quiet_hours = "22:00-08:00"
        dispatch_seconds = 0.1

    from bot.metrics import REGISTRY

    def sent_by_telegram() -> float:
        return REGISTRY.get_sample_value("bot_messages_sent_total", {"transport": "telegram"}) or 0.0

    sent_before = sent_by_telegram()
    scheduler = build_scheduler(db, broadcaster, Settings(), clock)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.start()
    try:
        await tg.chat(50_001).wait_for(3, timeout=10)
        await tg.chat(50_002).wait_for(3, timeout=10)
    finally:
        scheduler.shutdown(wait=False)  # cancels the job, not the dispatch run it started
        await broadcaster.close()  # calls in flight finish and are recorded
        await scheduler.drain()

    assert sent_by_telegram() - sent_before == 6  # the metric counts by channel
    assert set(jobs) == {DISPATCH_JOB, EVENTS_AFTER_JOB}
    assert all(job.misfire_grace_time is None and job.coalesce for job in jobs.values())
    assert str(scheduler.timezone) == "UTC"
    assert await states(db) == Counter({"sent": 6})


async def test_the_bot_starts_the_jobs_from_its_settings_and_stops_them_without_losing_a_send(db, tg, clock, broadcaster):
    from types import SimpleNamespace

    from bot.settings import Settings
    from scheduler.jobs import start_for_app

    await registered_teachers(db, 2)
    clock.now = AFTER_ALL_REMINDERS
    settings = Settings(telegram={"token": tg.token, "api_base_url": tg.base_url}, quiet_hours="22:00-08:00")
    app = SimpleNamespace(settings=settings, db=db, clock=clock, closers=[])

    scheduler = start_for_app(app)
    scheduler.reschedule_job(DISPATCH_JOB, trigger="interval", seconds=0.1)
    try:
        await tg.chat(50_001).wait_for(1, timeout=10)
    finally:
        scheduler.shutdown(wait=True)  # the order bot/__main__.py uses: the scheduler, then the app's closers
        for close in reversed(app.closers):
            await close()

    async with db.unit() as uow:
        sending = (await uow.session.execute(
            select(OutboxMessage).where(OutboxMessage.state.in_(("sending", "attempting")))
        )).all()
    before = sum((await delivered(tg)).values())
    await run_until_idle(db, broadcaster, AFTER_ALL_REMINDERS)  # the next start sends what is left
    seen = await delivered(tg)
    assert sending == [] and before >= 1
    assert sum(seen.values()) == 6 and set(seen.values()) == {1}

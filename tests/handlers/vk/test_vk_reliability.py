"""What the VK channel survives: long-poll failures, network errors, redeliveries, retried sends, crashes."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import requests
from sqlalchemy import select
from vk_api.bot_longpoll import VkBotLongPoll

from dialogs.model import CommandEvent, ExternalId, OutMessage, Reply
from handlers.vk.adapter import VkAdapter
from handlers.vk.render import random_id, send_reply
from storage.models import Account, Conversation, InboxUpdate
from tests.handlers.vk.conftest import VkPerson

USER = 300_101


async def start_handle_one_and_stop(vk_client, engine, db) -> None:
    """A fresh adapter, as after a restart: start it, wait until it has handled one event, stop."""
    adapter = VkAdapter(vk_client, engine, db, wait=0.2)
    await adapter.start()
    try:
        await adapter.wait_processed(1)
    finally:
        await adapter.stop()


@pytest.mark.parametrize("code", [1, 2, 3])
async def test_a_long_poll_failed_answer_is_survived(vk_person, fake, code):
    person = vk_person(USER)

    fake.long_poll_failed(code)
    await fake.wait_long_poll_started()
    await person.start()

    assert person.text().startswith("Здравствуйте!")


async def test_an_event_sent_while_the_key_was_refreshed_is_not_lost(vk_person, fake):
    person = vk_person(USER)

    fake.long_poll_failed(2)
    await person.start()  # pushed before the bot polls again with the new key

    assert person.text().startswith("Здравствуйте!")


class _Flaky:
    """A long poll whose first checks fail with a network error, as vk-api lets them escape."""

    def __init__(self, inner: VkBotLongPoll, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def check(self):
        if self.failures:
            self.failures -= 1
            raise requests.ConnectionError("connection reset by peer")
        return self.inner.check()


async def test_network_errors_restart_polling_without_losing_events(fake, vk_client, engine, db):
    adapter = VkAdapter(
        vk_client, engine, db, wait=0.2, backoff_base=0.05, backoff_max=0.1,
        longpoll_factory=lambda: _Flaky(VkBotLongPoll(vk_client.vk, fake.group_id, wait=0.2), failures=3),
    )
    await adapter.start()
    try:
        await fake.wait_calls("groups.getLongPollServer")
        await fake.user_writes(USER, "/start")  # queued while the bot's polls fail

        await adapter.wait_processed(1)

        assert fake.last_message_to(USER)["text"].startswith("Здравствуйте!")
        assert adapter.poll_failures == 0
        assert len(fake.calls_to("groups.getLongPollServer")) == 1  # same key and ts kept
    finally:
        await adapter.stop()


async def test_polling_starts_when_vk_is_down_at_first(fake, vk_client, engine, db):
    fake.fail_next("groups.getLongPollServer", 10, times=2)
    adapter = VkAdapter(vk_client, engine, db, wait=0.2, backoff_base=0.05, backoff_max=0.1)
    await adapter.start()
    try:
        await fake.wait_long_poll_started()
        await fake.user_writes(USER, "/start")

        await adapter.wait_processed(1)

        assert fake.last_message_to(USER)["text"].startswith("Здравствуйте!")
        assert len(fake.calls_to("groups.getLongPollServer")) == 3
    finally:
        await adapter.stop()


async def test_messages_sent_while_the_bot_was_down_are_fetched_at_the_next_start(fake, vk_client, engine, db):
    adapter = VkAdapter(vk_client, engine, db, wait=0.2)
    await adapter.start()
    try:
        await fake.wait_long_poll_started()
        await fake.user_writes(USER, "/start")
        await adapter.wait_processed(1)
    finally:
        await adapter.stop()
    async with db.unit() as uow:
        saved = await uow.inbox.cursor(f"vk:{fake.group_id}")
    assert saved is not None and int(saved) > 1

    await fake.user_writes(USER, "/help")  # nobody polls now: VK keeps it
    await start_handle_one_and_stop(vk_client, engine, db)

    texts = [message["text"] for message in fake.messages_to(USER)]
    assert texts[0].startswith("Здравствуйте!")
    assert texts[1].startswith("Что умеет бот")  # the help, answered after the restart
    async with db.unit() as uow:
        assert int(await uow.inbox.cursor(f"vk:{fake.group_id}")) > int(saved)


async def test_a_redelivered_message_is_handled_once(vk_person, fake, bot, db):
    from bot.metrics import REGISTRY

    def metric(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"transport": "vk"}) or 0.0

    handled_before, duplicates_before = metric("bot_updates_handled_total"), metric("bot_updates_duplicate_total")
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    sent_before = len(fake.messages_to(USER))

    fake.push_raw_event(person.event)  # the same event_id again
    await bot.wait_processed(bot.processed + 1)

    assert len(fake.messages_to(USER)) == sent_before
    assert metric("bot_updates_handled_total") - handled_before == 2  # the VK channel is in the metrics too
    assert metric("bot_updates_duplicate_total") - duplicates_before == 1
    assert metric("bot_reply_seconds_count") >= 2
    async with db.unit() as uow:
        conversation = (await uow.session.execute(select(Conversation))).scalar_one()
    assert (conversation.flow, conversation.screen) == ("consent", "ask")


async def test_a_redelivered_button_press_is_answered_and_applied_once(vk_person, fake, bot):
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    answers = len(fake.event_answers)

    fake.push_raw_event(person.event)
    await bot.wait_processed(bot.processed + 1)

    assert len(fake.event_answers) == answers
    assert person.text().startswith("Согласие")
    assert fake.last_message_to(USER)["text"].startswith("Согласие")


async def test_a_reply_send_that_failed_is_retried_with_the_same_random_id(vk_person, fake):
    person = vk_person(USER)
    fake.fail_next("messages.send", 10, peer_id=USER)

    await person.start()

    assert [m["text"][:13] for m in person.last] == ["Здравствуйте!"]
    first, second = fake.calls_to("messages.send")[:2]
    assert first["params"]["random_id"] == second["params"]["random_id"]


async def test_sending_the_same_reply_twice_stores_each_message_once(fake, vk_client):
    reply = Reply(messages=[OutMessage("Первое"), OutMessage("Второе")])

    await send_reply(vk_client, USER, reply, key="u:abc")
    await send_reply(vk_client, USER, reply, key="u:abc")

    assert [m["text"] for m in fake.messages_to(USER)] == ["Первое", "Второе"]
    assert [m["random_id"] for m in fake.messages_to(USER)] == [random_id("u:abc", 0), random_id("u:abc", 1)]
    assert len(fake.calls_to("messages.send")) == 4


async def test_a_person_who_forbade_messages_stops_the_reply_without_retries(fake, vk_client):
    fake.forbid_messages(USER)

    sent = await send_reply(vk_client, USER, Reply(messages=[OutMessage("раз"), OutMessage("два")]), key="k")

    assert sent.parts == 0 and sent.settled
    assert len(fake.calls_to("messages.send")) == 1


async def test_an_event_journaled_before_a_crash_is_handled_at_the_next_start(fake, vk_client, engine, db):
    raw = {"type": "message_new", "event_id": "crashed-1", "group_id": fake.group_id, "v": "5.199",
           "object": {"message": {"from_id": USER, "peer_id": USER, "text": "/start", "id": 1,
                                  "conversation_message_id": 1, "attachments": []},
                      "client_info": {"button_actions": ["text", "callback"], "keyboard": True,
                                      "inline_keyboard": True}}}
    async with db.unit() as uow:
        await uow.inbox.record("vk", "crashed-1", json.dumps(raw))
        await uow.commit()

    await start_handle_one_and_stop(vk_client, engine, db)

    assert fake.last_message_to(USER)["text"].startswith("Здравствуйте!")
    async with db.unit() as uow:
        row = (await uow.session.execute(select(InboxUpdate))).scalar_one()
    assert row.handled_at is not None and row.payload is None


class _SlowEngine:
    """The real engine behind a delay, as under load."""

    def __init__(self, engine, delay: float) -> None:
        self.engine, self.delay = engine, delay

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    async def handle(self, who, event, *, update_id=None):
        await asyncio.sleep(self.delay)
        return await self.engine.handle(who, event, update_id=update_id)


async def test_a_press_is_answered_before_a_slow_reply_is_ready(fake, vk_client, engine, db):
    adapter = VkAdapter(vk_client, _SlowEngine(engine, 1.0), db, wait=0.2, answer_within=0.05)
    await adapter.start()
    try:
        await fake.wait_long_poll_started()
        person = VkPerson(fake, adapter, USER)
        await person.start()
        pressed = time.monotonic()

        await person.tap("Всеволожский район")

        (answer,) = fake.event_answers
        assert answer["time"] - pressed < 0.8
        assert fake.last_message_to(USER)["time"] - pressed >= 1.0
    finally:
        await adapter.stop()


class _Gate:
    """A long poll that holds its first batch of events until the test lets it go."""

    def __init__(self, make_inner) -> None:
        self.make_inner = make_inner  # called in the polling thread: it calls VK
        self.inner = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> "_Gate":
        self.inner = self.make_inner()
        return self

    def check(self):
        events = self.inner.check()
        if events and not self.release.is_set():
            self.holding.set()
            self.release.wait(5)
        return events


@pytest.mark.parametrize("sent_before_the_crash", [False, True])
async def test_a_reply_committed_before_a_crash_goes_out_at_the_next_start_once(
        fake, vk_client, engine, db, sent_before_the_crash):
    async with db.unit() as uow:
        await uow.inbox.record("vk", "crashed-2", "{}")
        await uow.commit()
    # Handled and committed; then the process dies before (or right after) sending the reply.
    reply = await engine.handle(ExternalId("vk", str(USER), str(USER)), CommandEvent("start"), update_id="crashed-2")
    if sent_before_the_crash:
        await send_reply(vk_client, USER, reply, key="u:crashed-2")
    assert len(fake.messages_to(USER)) == int(sent_before_the_crash)

    adapter = VkAdapter(vk_client, engine, db, wait=0.2)
    await adapter.start()
    await adapter.stop()
    await engine.close()

    (message,) = fake.messages_to(USER)  # VK keeps a part sent again under its random_id once
    assert message["text"].startswith("Здравствуйте!")
    async with db.unit() as uow:
        row = (await uow.session.execute(select(InboxUpdate))).scalar_one()
    assert row.handled_at is not None and row.reply is None


async def test_a_reply_vk_failed_to_take_goes_out_with_a_later_replay_round_once(fake, vk_client, engine, db):
    from datetime import timedelta

    adapter = VkAdapter(vk_client, engine, db, wait=0.2, send_attempts=2, send_backoff=0.01,
                        replay_every=0.1, orphan_age=timedelta(seconds=0.3))
    fake.fail_next("messages.send", 10, times=3, peer_id=USER)  # VK down for the first send, and one resend
    await adapter.start()
    try:
        await fake.wait_long_poll_started()
        await VkPerson(fake, adapter, USER).start()
        deadline = time.monotonic() + 10
        while not fake.messages_to(USER) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a few more rounds: nothing goes twice
    finally:
        await adapter.stop()
        await engine.close()

    (message,) = fake.messages_to(USER)
    assert message["text"].startswith("Здравствуйте!")
    assert len(fake.calls_to("messages.send")) >= 4  # two failed tries, a failed resend, then the resend
    async with db.unit() as uow:
        row = (await uow.session.execute(select(InboxUpdate))).scalar_one()
    assert row.handled_at is not None and row.reply is None


async def test_events_fetched_during_shutdown_are_journaled_and_handled_at_the_next_start(
    fake, vk_client, engine, db
):
    gate = _Gate(lambda: VkBotLongPoll(vk_client.vk, fake.group_id, wait=0.2))
    adapter = VkAdapter(vk_client, engine, db, wait=0.2, longpoll_factory=gate)
    await adapter.start()
    await fake.wait_long_poll_started()
    await fake.user_writes(USER, "/start")
    await asyncio.to_thread(gate.holding.wait, 5)

    stopping = asyncio.create_task(adapter.stop())
    await asyncio.sleep(0.05)  # the stop flag is set; the poll still holds the event
    gate.release.set()
    await stopping

    assert fake.messages_to(USER) == []
    async with db.unit() as uow:
        assert [update_id for update_id, _ in await uow.inbox.pending("vk")] == [fake.events[0]["event_id"]]

    await start_handle_one_and_stop(vk_client, engine, db)
    assert fake.last_message_to(USER)["text"].startswith("Здравствуйте!")


async def test_forbidding_and_allowing_messages_marks_the_account_for_mailings(vk_person, fake, bot, db):
    person = vk_person(USER)
    await person.start()
    await person.tap("Всеволожский район")
    await person.tap("Согласен(на)")

    await fake.user_denies(USER)
    await bot.wait_processed(bot.processed + 1)
    async with db.unit() as uow:
        denied = (await uow.session.execute(select(Account.unreachable_at))).scalar_one()
    await fake.user_allows(USER)
    await bot.wait_processed(bot.processed + 1)
    async with db.unit() as uow:
        allowed = (await uow.session.execute(select(Account.unreachable_at))).scalar_one()

    assert denied is not None and allowed is None


async def test_a_permission_event_from_a_stranger_stores_nothing(fake, bot, db):
    await fake.user_allows(USER + 7)

    await bot.wait_processed(1)

    async with db.unit() as uow:
        assert (await uow.session.execute(select(Account))).first() is None


async def test_malformed_events_are_ignored_and_polling_goes_on(vk_person, fake, bot):
    fake.push_raw_event({"type": "message_new", "object": "garbage", "event_id": "bad-1"})
    fake.push_raw_event({"type": "message_deny", "object": None, "event_id": "bad-2"})
    fake.push_raw_event({"type": "message_event", "object": {"user_id": "x"}, "event_id": "bad-3"})
    person = vk_person(USER)

    await person.start()

    assert person.text().startswith("Здравствуйте!")
    assert bot.running



async def test_orphaned_events_are_replayed_while_running_and_try_again_ones_are_settled(fake, vk_client, engine, db):
    from datetime import timedelta

    from sqlalchemy import update

    from storage.models import utcnow

    def message_new(event_id: str, user_id: int) -> dict:
        return {"type": "message_new", "event_id": event_id, "group_id": fake.group_id, "object": {
            "message": {"from_id": user_id, "peer_id": user_id, "text": "/start", "conversation_message_id": 1},
        }}

    adapter = VkAdapter(vk_client, engine, db, wait=0.2, replay_every=0.1, orphan_age=timedelta(seconds=60))
    await adapter.start()
    try:
        # Journaled by another process that died: two of them long ago; the engine (shared here)
        # had answered the second with "try again" while the database was down; the third is
        # recent, in hand elsewhere.
        orphan, deferred, fresh = 410_001, 410_002, 410_003
        async with db.unit() as uow:
            for event_id, user_id in (("orphan", orphan), ("deferred", deferred), ("fresh", fresh)):
                await uow.inbox.record("vk", event_id, json.dumps(message_new(event_id, user_id)))
            await uow.session.execute(
                update(InboxUpdate).where(InboxUpdate.update_id.in_(["orphan", "deferred"]))
                .values(received_at=utcnow() - timedelta(minutes=2))
            )
            await uow.commit()
        engine.deferred.add(("vk", "deferred"))

        await adapter.wait_processed(1)
        await asyncio.sleep(0.5)  # a few more rounds: nothing else may be replayed
    finally:
        await adapter.stop(timeout=5)

    async with db.unit() as uow:
        handled = dict((await uow.session.execute(
            select(InboxUpdate.update_id, InboxUpdate.handled_at.is_not(None)).where(InboxUpdate.transport == "vk")
        )).all())
    assert fake.last_message_to(orphan)["text"].startswith("Здравствуйте!")
    assert fake.messages_to(deferred) == [] and fake.messages_to(fresh) == []
    assert handled == {"orphan": True, "deferred": True, "fresh": False}
    assert adapter.processed == 1 and engine.deferred == set()

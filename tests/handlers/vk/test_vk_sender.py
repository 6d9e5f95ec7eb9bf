"""VkSender through the shared broadcaster against the fake VK server: limits, errors, no duplicates."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from bot.settings import VkSettings
from handlers.vk.render import random_id
from scheduler.broadcaster import (
    VK_LIMIT,
    Broadcaster,
    Fatal,
    Outcome,
    Outgoing,
    RateLimit,
    Rejected,
    RetryAfter,
    SlowDown,
    Transient,
    Unreachable,
)
from scheduler.senders import build_vk_sender

USER = 300_201


@pytest.fixture
def sender(fake):
    return build_vk_sender(VkSettings(token=SecretStr(fake.token), group_id=fake.group_id, api_base_url=fake.base_url))


def outgoing(key: str = "reminder:1:vk:300201", chat: int = USER, **fields) -> Outgoing:
    return Outgoing(key=key, transport="vk", chat_id=str(chat), text=fields.pop("text", "Напоминание"), **fields)


async def test_a_message_goes_out_with_a_random_id_derived_from_its_key(fake, sender):
    message_id = await sender.send(outgoing())

    sent = fake.last_message_to(USER)
    assert sent["text"] == "Напоминание" and str(sent["message_id"]) == message_id
    assert sent["random_id"] == random_id("reminder:1:vk:300201", 0)


async def test_buttons_become_callback_buttons_and_html_markup_is_dropped(fake, sender):
    await sender.send(outgoing(text="<b>Семинар</b> &laquo;Наставник&raquo;", buttons=[[("Открыть", "go:events")]]))

    sent = fake.last_message_to(USER)
    assert sent["text"] == "Семинар «Наставник»"
    (button,) = fake.buttons_of(sent)
    assert (button["type"], button["label"], button["payload"]) == ("callback", "Открыть", {"t": "go:events"})


async def test_documents_and_photos_are_uploaded_and_attached(fake, sender):
    await sender.send(outgoing(key="digest:1", document=("Сводка.csv", b"a;b\n")))
    await sender.send(outgoing(key="digest:2", photo=("chart.png", b"\x89PNG....")))

    doc, photo = fake.messages_to(USER)
    assert doc["attachments"][0].startswith(f"doc-{fake.group_id}_")
    assert photo["attachments"][0].startswith(f"photo-{fake.group_id}_")
    assert [u["kind"] for u in fake.uploads] == ["doc", "photo"]
    assert fake.calls_to("docs.save")[0]["params"]["title"] == "Сводка.csv"


@pytest.mark.parametrize(("code", "expected"), [
    (6, SlowDown), (9, RetryAfter), (901, Unreachable), (902, Unreachable), (10, Transient), (1, Transient),
    (5, Fatal), (100, Rejected), (914, Rejected), (15, Rejected),
])
async def test_vk_errors_are_classified_for_the_broadcaster(fake, sender, code, expected):
    fake.fail_next("messages.send", code)

    with pytest.raises(expected):
        await sender.send(outgoing())

    assert len(fake.calls_to("messages.send")) == 1  # the sender itself never retries


async def test_flood_control_waits_for_this_chat_only(fake, sender):
    fake.fail_next("messages.send", 9)

    with pytest.raises(RetryAfter) as error:
        await sender.send(outgoing())

    assert error.value.scope == "chat" and error.value.seconds >= 600


async def test_a_network_error_is_transient(fake):
    settings = VkSettings(token=SecretStr(fake.token), group_id=fake.group_id, api_base_url="http://127.0.0.1:9")
    sender = build_vk_sender(settings)

    with pytest.raises(Transient):
        await sender.send(outgoing())
    await sender.close()


async def test_the_broadcaster_retries_a_failed_send_with_the_same_random_id_and_vk_stores_it_once(fake, sender):
    fake.fail_next("messages.send", 10)
    broadcaster = Broadcaster({"vk": sender}, {"vk": VK_LIMIT}, backoff_base=0.01, backoff_max=0.02)
    results = []

    async def record(msg, outcome, message_id):
        results.append(outcome)

    report = await broadcaster.send_many([outgoing()], record)
    await broadcaster.close()

    assert results == [Outcome.SENT] and report.retries == 1
    first, second = fake.calls_to("messages.send")
    assert first["params"]["random_id"] == second["params"]["random_id"]
    assert len(fake.messages_to(USER)) == 1


async def test_a_resent_message_after_a_lost_answer_is_not_doubled(fake, sender):
    await sender.send(outgoing())  # VK stored it, but say the answer was lost and the job resends

    await sender.send(outgoing())

    assert len(fake.messages_to(USER)) == 1


async def test_people_who_forbade_messages_are_unreachable_and_the_rest_get_theirs(fake, sender):
    fake.forbid_messages(USER + 1)
    broadcaster = Broadcaster({"vk": sender}, {"vk": VK_LIMIT})
    outcomes = {}

    async def record(msg, outcome, message_id):
        outcomes[msg.chat_id] = outcome

    await broadcaster.send_many([outgoing(f"k{i}", USER + i) for i in range(3)], record)
    await broadcaster.close()

    assert outcomes == {str(USER): Outcome.SENT, str(USER + 1): Outcome.UNREACHABLE, str(USER + 2): Outcome.SENT}


async def test_error_6_pauses_vk_and_the_message_still_goes(fake, sender):
    fake.fail_next("messages.send", 6)
    broadcaster = Broadcaster({"vk": sender}, {"vk": RateLimit(per_second=20.0, per_chat_per_second=1.0)})

    outcome = await broadcaster.send_one(outgoing())
    await broadcaster.close()

    assert outcome == Outcome.SENT and len(fake.messages_to(USER)) == 1


async def test_the_broadcaster_keeps_vk_at_its_rate_limit(fake, sender):
    fake.max_rps = 20  # the fake answers error 6 above VK's community limit
    broadcaster = Broadcaster({"vk": sender}, {"vk": RateLimit(per_second=20.0, per_chat_per_second=1.0)})
    messages = [outgoing(f"k{i}", USER + i) for i in range(30)]
    started = time.monotonic()

    report = await broadcaster.send_many(messages, lambda *a: _noop())
    await broadcaster.close()

    assert report.sent == 30  # an occasional error 6 (requests bunched in transit) only pauses VK briefly
    assert time.monotonic() - started >= 0.45  # 30 messages at 20/s need at least half a second
    assert len(fake.calls_to("messages.send")) == report.attempts


async def _noop() -> None:
    return None


async def test_a_button_of_a_scheduled_message_opens_its_flow_when_tapped(fake, sender, vk_person):
    person = vk_person(USER)
    await person.start()
    await sender.send(outgoing(key="nudge:1", text="Загляните в справку", buttons=[[("Справка", "go:help")]]))

    await person.tap("Справка")

    assert person.text().startswith("Что умеет бот")

"""«📣 Опубликовать на стене ВК»: a coordinator announces an event on the community wall from the bot.

The button queues an outbox row of kind "wall" (once per event); the outbox dispatcher hands it to
the broadcaster's wall sender, which posts it through the fake VK server's wall.post.
"""

from __future__ import annotations

import math

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from bot.settings import Settings, VkSettings
from dialogs.engine import DialogEngine
from dialogs.flows.events import WALL_ALREADY, WALL_BUTTON, WALL_QUEUED
from dialogs.registry import build_registry
from handlers.vk.client import VkClient
from handlers.vk.wall import WALL_TRANSPORT, WallSender, build_wall_sender
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.senders import VkSender
from storage.models_events import Event
from storage.models_outbox import OutboxMessage
from storage.services.invites import create_invite
from tests.support.people import registered_in_db, vk_who
from tests.support.scenarios import open_event, publish_club_event, register_coordinator, vk_actor, vk_broadcaster

pytestmark = pytest.mark.timeout(60)

COORDINATOR, TEACHER = 300_851, 300_852


def vk_settings(fake) -> Settings:
    return Settings(_env_file=None, vk=VkSettings(token=SecretStr(fake.token), group_id=fake.group_id,
                                                  api_base_url=fake.base_url))


@pytest.fixture
def engine(db, clock, fake) -> DialogEngine:
    """The engine as `python -m bot run` builds it with the VK channel configured."""
    return DialogEngine(db, build_registry(), config=vk_settings(fake), clock=clock)


async def event_card_of_a_coordinator(vk_person, db, clock):
    coordinator = vk_person(COORDINATOR)
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code="vsevolozhsky", now=clock.now)
        await uow.commit()
    await register_coordinator(vk_actor(coordinator), code)
    await publish_club_event(vk_actor(coordinator))
    return coordinator


async def wall_rows(db) -> list[OutboxMessage]:
    async with db.unit() as uow:
        return list((await uow.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "wall"))).scalars())


async def test_the_announcement_appears_on_the_wall_once_even_when_the_button_is_pressed_twice(
    vk_person, fake, vk_client, db, clock
):
    coordinator = await event_card_of_a_coordinator(vk_person, db, clock)
    assert WALL_BUTTON in coordinator.buttons()

    await coordinator.tap(WALL_BUTTON)
    first = coordinator.texts()[0]
    await coordinator.tap(WALL_BUTTON)
    second = coordinator.texts()[0]
    broadcaster = vk_broadcaster(vk_client)
    reports = [await dispatch_due(db, broadcaster, clock.now) for _ in range(2)]
    await broadcaster.close()

    assert (first, second) == (WALL_QUEUED, WALL_ALREADY)
    assert coordinator.text().startswith("«Клуб: весенняя встреча»")  # back on the card
    assert [report.sent for report in reports] == [1, 0]
    [post] = fake.wall_posts
    assert post["owner_id"] == -fake.group_id and post["from_group"]
    assert post["text"].splitlines()[:5] == [
        "📣 «Клуб: весенняя встреча»", "Клуб молодых педагогов", "Когда: 10 декабря 2026, 09:00–11:00",
        "Место: ВРМЦ, ауд. 12", "Для кого: молодые педагоги"]
    assert post["text"].endswith(f"https://vk.me/club{fake.group_id}")
    [row] = await wall_rows(db)
    async with db.unit() as uow:
        event_id = (await uow.session.execute(select(Event.id))).scalar_one()
    assert (row.key, row.state, row.transport) == (f"event:{event_id}:wall", "sent", WALL_TRANSPORT)
    assert fake.calls_to("wall.post")[0]["params"]["guid"]


async def test_a_teacher_sees_no_wall_button_on_the_event(vk_person, db, clock):
    await event_card_of_a_coordinator(vk_person, db, clock)
    teacher = vk_person(TEACHER)
    await registered_in_db(db, vk_who(TEACHER), clock.now, role="teacher", name="Зайцева Полина Андреевна")

    await teacher.write("/events")
    await open_event(vk_actor(teacher))

    assert "✅ Иду" in teacher.buttons() and WALL_BUTTON not in teacher.buttons()


async def test_wall_posts_wait_while_no_wall_sender_is_configured_and_messages_still_go(
    vk_person, fake, vk_client, db, clock
):
    coordinator = await event_card_of_a_coordinator(vk_person, db, clock)
    await coordinator.tap(WALL_BUTTON)
    messages_only = Broadcaster({"vk": VkSender(vk_client)}, {"vk": RateLimit(per_second=math.inf)})

    report = await dispatch_due(db, messages_only, clock.now)
    await messages_only.close()

    assert report.claimed == 0 and fake.wall_posts == []
    [row] = await wall_rows(db)
    assert row.state == "pending"


async def test_a_post_the_wall_refuses_ends_failed_without_retrying(vk_person, fake, vk_client, db, clock):
    coordinator = await event_card_of_a_coordinator(vk_person, db, clock)
    await coordinator.tap(WALL_BUTTON)
    wrong_group = WallSender(VkClient(vk_client.vk, fake.group_id + 1))  # VK answers 214
    broadcaster = Broadcaster({WALL_TRANSPORT: wrong_group}, {WALL_TRANSPORT: RateLimit(per_second=math.inf)})

    report = await dispatch_due(db, broadcaster, clock.now)
    await broadcaster.close()

    assert report.failed == 1 and fake.wall_posts == []
    [row] = await wall_rows(db)
    assert row.state == "failed" and len(fake.calls_to("wall.post")) == 1


async def test_the_wall_sender_built_from_settings_posts_through_the_configured_base_url(fake, db, clock):
    sender = build_wall_sender(vk_settings(fake))
    broadcaster = Broadcaster({WALL_TRANSPORT: sender}, {WALL_TRANSPORT: RateLimit(per_second=math.inf)})
    member_id = await registered_in_db(db, vk_who(COORDINATOR), clock.now, role="coordinator",
                                       name="Кузнецова Елена Викторовна")
    async with db.unit() as uow:
        uow.session.add(OutboxMessage(key="event:7:wall", kind="wall", member_id=member_id, text="Анонс",
                                      due_at=clock.now, buttons=[], state="pending", attempts=0))
        await uow.commit()

    report = await dispatch_due(db, broadcaster, clock.now)
    await broadcaster.close()

    assert report.sent == 1
    assert [post["text"] for post in fake.wall_posts] == ["Анонс"]


def test_a_wall_sender_needs_the_community(fake):
    with pytest.raises(ValueError, match="VK__GROUP_ID"):
        build_wall_sender(VkSettings(token=SecretStr(fake.token), group_id=None))

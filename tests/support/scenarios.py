"""Scenario steps shared by the end-to-end tests of both channels (Telegram emulator, fake VK).

A scenario talks to an `Actor`: one person who taps buttons by label or says text and gets
back the text of the screen then shown, whatever the channel. `telegram_actor` and
`vk_actor` make one; the step functions below are what both channels' scenarios do alike.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers.vk.render import short_label
from scheduler.broadcaster import Broadcaster, RateLimit

COORDINATOR_NAME = "Кузнецова Елена Викторовна"


@dataclass
class Actor:
    """One person in a scenario: `await tap(label)` / `await say(text)` return the screen shown after."""

    tap: Callable[[str], Awaitable[str]]
    say: Callable[[str], Awaitable[str]]
    buttons: Callable[[], Awaitable[list[str]]]


def telegram_actor(chat) -> Actor:
    """An emulator chat as an actor: each step waits until the bot is quiet, the screen is its last message."""

    async def tap(label: str) -> str:
        await chat.press(label)
        await chat.wait_reply()
        return (await chat.wait_idle())[-1].content

    async def say(text: str) -> str:
        await chat.send(text)
        await chat.wait_reply()
        return (await chat.wait_idle())[-1].content

    return Actor(tap, say, chat.buttons)


def vk_actor(person) -> Actor:
    """A `VkPerson` (tests/handlers/vk/conftest.py) as an actor; labels are cut to VK's 40 characters as drawn."""

    async def tap(label: str) -> str:
        await person.tap(short_label(label))
        return person.text()

    async def say(text: str) -> str:
        await person.write(text)
        return person.text()

    async def buttons() -> list[str]:
        return person.buttons()

    return Actor(tap, say, buttons)


# ---- registration --------------------------------------------------------------------------------


async def register_coordinator(actor: Actor, invite_code: str, name: str = COORDINATOR_NAME) -> str:
    """A coordinator of Всеволожский район registers with an invite code; returns the screen after."""
    await actor.say("/start")
    await actor.tap("Всеволожский район")
    await actor.tap("Согласен(на)")
    await actor.tap("У меня есть код приглашения")
    await actor.say(invite_code)
    await actor.say(name)
    return await actor.tap("Всё верно")


# ---- surveys and events ----------------------------------------------------------------------------


async def open_young_teacher_campaign(coordinator: Actor) -> str:
    """From the main menu: a 30-day campaign of the young-teacher questionnaire; returns its card."""
    await coordinator.tap("📊 Кампании анкетирования")
    await coordinator.tap("Открыть новую кампанию")
    await coordinator.tap("Анкета для молодых педагогов (Приложение 3)")
    return await coordinator.tap("С сегодняшнего дня на 30 дней")


EVENT_TITLE = "Клуб: весенняя встреча"
EVENT_START = "10.12.2026 09:00"  # in the list: "10.12 09:00 Клуб: весенняя встреча"


async def publish_club_event(coordinator: Actor) -> str:
    """A coordinator creates a club meeting on 10.12.2026 09:00–11:00 and publishes it; returns its card."""
    await coordinator.say("/events")
    await coordinator.tap("➕ Новое мероприятие")
    await coordinator.tap("Клуб молодых педагогов")
    await coordinator.say(EVENT_TITLE)
    await coordinator.say(EVENT_START)
    await coordinator.say("11:00")
    await coordinator.say("ВРМЦ, ауд. 12")
    await coordinator.tap("Молодые педагоги")
    await coordinator.tap("Без ограничений")
    await coordinator.tap("☐ Коммуникативные")
    await coordinator.tap("Готово ✅")
    await coordinator.say("metod@example.org")
    return await coordinator.tap("Опубликовать")


async def open_event(actor: Actor, when: str = "10.12 09:00") -> str:
    """On the list of events, open the one whose button shows `when`; returns its card."""
    label = next(label for label in await actor.buttons() if when in label)
    return await actor.tap(label)


# ---- mentoring -------------------------------------------------------------------------------------------

MENTEE_LABEL = "Молодова Мария Петровна, МОБУ «СОШ № 2», Кудрово"
MEETING_LABEL = "26.11.2026 · Консультация · 45 мин · ⏳"


async def first_starting_with(actor: Actor, prefix: str) -> str:
    return next(label for label in await actor.buttons() if label.startswith(prefix))


async def match_and_approve(coordinator: Actor, *, again: bool = False) -> str:
    """The coordinator runs matching (or, `again`, opens the proposals) and approves the best pair.

    Returns the pair's card as shown before approving.
    """
    await coordinator.say("/menu")
    await coordinator.tap("🧩 Подбор наставников")
    await coordinator.tap("Предложения" if again else "▶️ Подобрать пары")
    card = await coordinator.tap(await first_starting_with(coordinator, "✳"))
    await coordinator.tap("✅ Одобрить")
    return card


async def answer_proposal(mentor: Actor, answer: str) -> str:
    """The mentor opens the proposal of the mentee and answers it («✅ Принять» or «Отказаться»)."""
    await mentor.say("/menu")
    await mentor.tap("👥 Мои наставляемые")
    await mentor.tap("📨 Предложения")
    await mentor.tap(MENTEE_LABEL)
    return await mentor.tap(answer)


async def log_meeting_today(mentor: Actor) -> str:
    """The mentor logs a 45-minute consultation today on methodical matters, in a few taps."""
    await mentor.say("/menu")
    await mentor.tap("🗓 Записать встречу")
    await mentor.tap("Сегодня")
    await mentor.tap("45 мин")
    await mentor.tap("Очно, в ОУ")
    await mentor.tap("Консультация")
    await mentor.tap("☐ Методические")
    await mentor.tap("Готово ✅")
    return await mentor.tap("Пропустить")


async def confirm_meeting(mentee: Actor) -> str:
    """The mentee opens «🤝 Наставник» and confirms the meeting; returns the home screen seen first."""
    await mentee.say("/menu")
    home = await mentee.tap("🤝 Наставник")
    await mentee.tap("Подтвердить встречи")
    await mentee.tap(MEETING_LABEL)
    await mentee.tap("✅ Встреча была")
    return home


# ---- sending on the bot's own initiative ------------------------------------------------------------------


def vk_broadcaster(client) -> Broadcaster:
    """A broadcaster that sends outbox rows through a VK community client (`VkClient`), unpaced for tests.

    It also posts outbox rows of kind "wall" on the community wall (`WallSender` on the same client).
    """
    from handlers.vk.wall import WALL_TRANSPORT, WallSender
    from scheduler.senders import VkSender

    return Broadcaster(
        {"vk": VkSender(client), WALL_TRANSPORT: WallSender(client)},
        {"vk": RateLimit(per_second=math.inf), WALL_TRANSPORT: RateLimit(per_second=math.inf)},
    )

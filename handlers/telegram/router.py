"""Telegram handlers: translate messages and button presses to engine events, draw the reply."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, Message, Update

from dialogs.engine import DialogEngine
from dialogs.model import CommandEvent, Event, ExternalId, OtherEvent, PressEvent, TextEvent
from handlers.telegram.render import send_reply
from handlers.telegram.session import call_json
from storage.repositories.handling import Start

log = logging.getLogger(__name__)
TRANSPORT = "telegram"


def who_of(user_id: int, chat_id: int) -> ExternalId:
    return ExternalId(TRANSPORT, str(user_id), str(chat_id))


def sender_of(update: Update) -> str | None:
    """The id under which the engine knows the update's sender (`who_of`), if it has one."""
    event = update.message or update.callback_query
    user = event.from_user if event is not None else None
    return str(user.id) if user is not None else None


def message_event(message: Message) -> Event:
    """The neutral event for a Telegram message."""
    text = message.text
    if text is None:
        return OtherEvent(str(message.content_type))
    if text.startswith("/"):
        head, _, args = text[1:].partition(" ")
        name = head.split("@", 1)[0].lower()
        if name:
            return CommandEvent(name, args.strip())
    return TextEvent(text)


def press_event(data: str | None) -> Event:
    """A press: an engine token, or `go:<flow>` from a button in a scheduled message."""
    if data and data.startswith("go:"):
        return CommandEvent("__go__", data[3:])
    return PressEvent(data or "")


# `prefetched`: the update's start, read by the intake when it journaled the update (PostgreSQL).


async def on_message(message: Message, bot: Bot, engine: DialogEngine, event_update: Update,
                     prefetched: Start | None = None) -> None:
    if message.from_user is None or message.chat.type != "private":
        return
    update_id = str(event_update.update_id)
    reply = await engine.handle(
        who_of(message.from_user.id, message.chat.id), message_event(message), update_id=update_id,
        prefetched=prefetched,
    )
    await send_reply(bot, message.chat.id, reply)
    engine.delivered(TRANSPORT, update_id, reply)


async def on_button(query: CallbackQuery, bot: Bot, engine: DialogEngine, event_update: Update,
                    prefetched: Start | None = None) -> None:
    # Answer at once: Telegram shows a spinner until then and rejects a late answer.
    answered = asyncio.ensure_future(_answer(bot, query))
    chat_id = query.message.chat.id if query.message else query.from_user.id
    update_id = str(event_update.update_id)
    reply = await engine.handle(
        who_of(query.from_user.id, chat_id), press_event(query.data), update_id=update_id, prefetched=prefetched,
    )
    await answered
    await send_reply(bot, chat_id, reply)
    engine.delivered(TRANSPORT, update_id, reply)


async def _answer(bot: Bot, query: CallbackQuery) -> None:
    try:
        await call_json(bot, AnswerCallbackQuery, {"callback_query_id": query.id})
    except TelegramBadRequest:
        log.info("callback answered too late")


def build_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="dialog")
    router.message.register(on_message)
    router.callback_query.register(on_button)
    return router

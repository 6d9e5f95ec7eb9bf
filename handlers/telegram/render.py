"""Draw a neutral `Reply` in Telegram: plain text split to the 4,096 limit, inline keyboards, files."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiogram import Bot
from aiogram.methods import SendMessage
from aiogram.types import BufferedInputFile

from dialogs.model import OutMessage, Reply
from handlers.telegram.session import call_json
from handlers.text_split import split_text

TEXT_LIMIT = 4096  # https://core.telegram.org/bots/api#sendmessage
CAPTION_LIMIT = 1024


def inline_keyboard(rows: Iterable[Iterable[tuple[str, str]]]) -> dict[str, Any] | None:
    """Rows of (label, callback data) as the Bot API's inline keyboard JSON (None for no rows)."""
    keyboard = [[{"text": label, "callback_data": data} for label, data in row] for row in rows]
    return {"inline_keyboard": keyboard} if keyboard else None


def keyboard(message: OutMessage) -> dict[str, Any] | None:
    """A message's buttons; tokens are short (well under Telegram's 64-byte callback_data)."""
    return inline_keyboard([(button.label, button.token) for button in row] for row in message.buttons)


async def send_text(bot: Bot, chat_id: int | str, text: str, markup: dict[str, Any] | None = None, *,
                    parse_mode: str | None = None, timeout: float | None = None, retry_429: bool = True) -> Any:
    """sendMessage through the lean JSON call (see `call_json`); plain text unless `parse_mode`.
    Returns the sent message as the Bot API's JSON."""
    payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
    if parse_mode:
        payload["parse_mode"] = parse_mode
    if markup is not None:
        payload["reply_markup"] = markup
    return await call_json(bot, SendMessage, payload, timeout=timeout, retry_429=retry_429)


async def send_reply(bot: Bot, chat_id: int | str, reply: Reply) -> None:
    """Send every message of a reply in order; the keyboard goes with the last part of its text."""
    for message in reply.messages:
        parts = split_text(message.text or " ", TEXT_LIMIT)
        for index, part in enumerate(parts):
            markup = keyboard(message) if index == len(parts) - 1 else None
            await send_text(bot, chat_id, part, markup)
        for attachment in message.files:
            upload = BufferedInputFile(attachment.content, filename=attachment.name)
            caption = (attachment.caption or "")[:CAPTION_LIMIT] or None
            if attachment.kind == "photo":
                await bot.send_photo(chat_id, upload, caption=caption, parse_mode=None)
            else:
                await bot.send_document(chat_id, upload, caption=caption, parse_mode=None)

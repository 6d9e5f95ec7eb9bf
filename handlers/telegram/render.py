"""Draw a neutral `Reply` in Telegram: plain text split to the 4,096 limit, inline keyboards, files."""

from __future__ import annotations

from aiogram import Bot
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from dialogs.model import OutMessage, Reply
from handlers.text_split import split_text

TEXT_LIMIT = 4096  # https://core.telegram.org/bots/api#sendmessage
CAPTION_LIMIT = 1024


def keyboard(message: OutMessage) -> InlineKeyboardMarkup | None:
    """Rows of inline buttons; tokens are short (well under Telegram's 64-byte callback_data)."""
    if not message.buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=button.label, callback_data=button.token) for button in row]
            for row in message.buttons
        ]
    )


async def send_reply(bot: Bot, chat_id: int | str, reply: Reply) -> None:
    """Send every message of a reply in order; the keyboard goes with the last part of its text."""
    for message in reply.messages:
        parts = split_text(message.text or " ", TEXT_LIMIT)
        for index, part in enumerate(parts):
            markup = keyboard(message) if index == len(parts) - 1 else None
            await bot.send_message(chat_id, part, reply_markup=markup, parse_mode=None)
        for attachment in message.files:
            upload = BufferedInputFile(attachment.content, filename=attachment.name)
            caption = (attachment.caption or "")[:CAPTION_LIMIT] or None
            if attachment.kind == "photo":
                await bot.send_photo(chat_id, upload, caption=caption, parse_mode=None)
            else:
                await bot.send_document(chat_id, upload, caption=caption, parse_mode=None)

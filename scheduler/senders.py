"""Platform senders for the broadcaster.

A sender sends exactly one :class:`~scheduler.broadcaster.Outgoing` and, on
failure, raises exactly one exception of the
:class:`~scheduler.broadcaster.SendError` family.  Senders never pace, sleep
or retry: the :class:`~scheduler.broadcaster.Broadcaster` does all of that,
the same way for every transport.

Classification cheat sheet (what the broadcaster then does):

==================  ==========================================================
``RetryAfter``      pause the whole transport (or, ``scope="chat"``, the chat)
                    for ``seconds`` + margin, retry the same message first
``SlowDown``        short transport pause, retry; not counted as a failure
``Unreachable``     recipient is gone for good; Outcome.UNREACHABLE, chat is
                    skipped for the rest of the run
``Transient``       retry with exponential backoff, then Outcome.FAILED
``Rejected``        this message is refused for good; Outcome.REJECTED
``Fatal``           the transport is unusable (bad token); Outcome.FAILED for
                    the rest of the run on this transport
==================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from scheduler.broadcaster import (
    Fatal,
    Outgoing,
    Rejected,
    RetryAfter,
    SendError,
    Transient,
    Unreachable,
)

__all__ = ["TelegramSender", "classify_telegram_error"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Telegram
# --------------------------------------------------------------------------

# Bad Request descriptions that mean "this recipient cannot be written to".
_TG_UNREACHABLE_MARKERS = (
    "chat not found",
    "user is deactivated",
    "user not found",
    "peer_id_invalid",
    "bot was kicked",
    "bot was blocked",
    "bot is not a member",
    "have no rights to send",
    "not enough rights to send",
    "need administrator rights",
)


def classify_telegram_error(exc: BaseException) -> SendError:
    """Map an aiogram (or network) exception to the SendError family.

    Raises ``exc`` itself back if it is not a sending failure at all
    (e.g. a programming error), so that it is not mistaken for one.
    """
    if isinstance(exc, SendError):
        return exc
    text = str(exc)
    if isinstance(exc, TelegramRetryAfter):
        return RetryAfter(exc.retry_after, text)
    if isinstance(exc, TelegramForbiddenError):  # blocked by the user, kicked, deactivated
        return Unreachable(text)
    if isinstance(exc, TelegramUnauthorizedError):  # bad or revoked token
        return Fatal(text)
    if isinstance(exc, TelegramMigrateToChat):
        # The group became a supergroup: the old id is dead, the caller must re-address.
        return Rejected(f"{text} (migrate_to_chat_id={exc.migrate_to_chat_id})")
    if isinstance(exc, TelegramBadRequest):
        lowered = exc.message.lower()
        if any(marker in lowered for marker in _TG_UNREACHABLE_MARKERS):
            return Unreachable(text)
        return Rejected(text)
    if isinstance(exc, TelegramEntityTooLarge):  # a TelegramNetworkError subclass; permanent
        return Rejected(text)
    if isinstance(exc, TelegramNotFound):  # wrong method/endpoint; retrying will not help
        return Rejected(text)
    if isinstance(exc, (TelegramServerError, TelegramNetworkError, TelegramConflictError)):
        return Transient(text)  # RestartingTelegram is a TelegramServerError
    if isinstance(exc, (ClientDecodeError, TelegramAPIError)):
        # An HTML error page from a proxy, an unknown status code: assume temporary.
        return Transient(text)
    if isinstance(exc, (asyncio.TimeoutError, OSError)):
        return Transient(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, AiogramError):
        return Rejected(text)
    raise exc


def _tg_chat_id(chat_id: str) -> int | str:
    """Numeric ids go as ints; ``@channelusername`` stays a string."""
    stripped = chat_id.strip()
    if stripped.lstrip("-").isdigit():
        return int(stripped)
    return stripped


def _tg_keyboard(msg: Outgoing) -> InlineKeyboardMarkup | None:
    if not msg.buttons:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=data) for label, data in row]
            for row in msg.buttons
        ]
    )


class TelegramSender:
    """Sends :class:`Outgoing` messages through an aiogram :class:`Bot`.

    Text goes with ``sendMessage``; ``document``/``photo`` go with
    ``sendDocument``/``sendPhoto`` using ``text`` as the caption; ``buttons``
    become an inline keyboard.  The caller keeps texts within Telegram limits
    (4096 characters, 1024 for captions).

    ``owns_bot``: close the bot's HTTP session in :meth:`close` (leave False
    when the same bot also serves updates).  ``request_timeout``: per-call
    timeout in seconds, overriding the session default.
    """

    transport = "telegram"

    def __init__(self, bot: Bot, *, owns_bot: bool = False, request_timeout: int | None = None) -> None:
        self.bot = bot
        self._owns_bot = owns_bot
        self._request_timeout = request_timeout

    async def send(self, msg: Outgoing) -> str | None:
        chat_id = _tg_chat_id(msg.chat_id)
        markup = _tg_keyboard(msg)
        try:
            if msg.document is not None:
                filename, content = msg.document
                sent = await self.bot.send_document(
                    chat_id,
                    BufferedInputFile(content, filename=filename),
                    caption=msg.text or None,
                    parse_mode=msg.parse_mode,
                    reply_markup=markup,
                    request_timeout=self._request_timeout,
                )
            elif msg.photo is not None:
                filename, content = msg.photo
                sent = await self.bot.send_photo(
                    chat_id,
                    BufferedInputFile(content, filename=filename),
                    caption=msg.text or None,
                    parse_mode=msg.parse_mode,
                    reply_markup=markup,
                    request_timeout=self._request_timeout,
                )
            else:
                sent = await self.bot.send_message(
                    chat_id,
                    msg.text,
                    parse_mode=msg.parse_mode,
                    reply_markup=markup,
                    request_timeout=self._request_timeout,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify_telegram_error(exc)
            raise error from exc
        return str(sent.message_id)

    async def close(self) -> None:
        if self._owns_bot:
            await self.bot.session.close()


# VK: VkSender is added by the VK adapter work (error mapping: 6 → SlowDown, 9 → RetryAfter,
# 901/902 → Unreachable, 10 and network → Transient, others → Rejected).

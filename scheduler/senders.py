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

from handlers.telegram.render import inline_keyboard, send_text
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
        try:
            if msg.document is not None or msg.photo is not None:
                return str((await self._send_file(chat_id, msg)).message_id)
            return str((await self._send_text(chat_id, msg))["message_id"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify_telegram_error(exc)
            raise error from exc

    async def _send_text(self, chat_id: int | str, msg: Outgoing) -> dict:
        """sendMessage through the lean JSON call the replies use; a 429 reaches the broadcaster,
        which pauses the transport."""
        return await send_text(self.bot, chat_id, msg.text, inline_keyboard(msg.buttons), parse_mode=msg.parse_mode,
                               timeout=self._request_timeout, retry_429=False)

    async def _send_file(self, chat_id: int | str, msg: Outgoing):
        """sendDocument or sendPhoto (the file is the second positional argument of both)."""
        send = self.bot.send_document if msg.document is not None else self.bot.send_photo
        filename, content = msg.document if msg.document is not None else msg.photo
        return await send(
            chat_id,
            BufferedInputFile(content, filename=filename),
            caption=msg.text or None,
            parse_mode=msg.parse_mode,
            reply_markup=_tg_keyboard(msg),
            request_timeout=self._request_timeout,
        )

    async def close(self) -> None:
        if self._owns_bot:
            await self.bot.session.close()


# --------------------------------------------------------------------------
# VK
# --------------------------------------------------------------------------

# The VK imports stay in this section, so that each sender can be changed on its own.
import html  # noqa: E402
import re  # noqa: E402

from dialogs.model import OutButton, OutFile  # noqa: E402
from handlers.vk.api_session import make_vk_api  # noqa: E402
from handlers.vk.client import VkClient, classify_vk_error  # noqa: E402
from handlers.vk.render import keyboards, random_id  # noqa: E402

__all__ += ["VkSender", "build_vk_sender", "classify_vk_error"]

_HTML_TAG = re.compile(r"<[^>]+>")


def _vk_text(msg: Outgoing) -> str:
    """VK shows plain text only: drop Telegram HTML markup when the message carries it."""
    if msg.parse_mode and msg.parse_mode.upper() == "HTML":
        return html.unescape(_HTML_TAG.sub("", msg.text))
    return msg.text


class VkSender:
    """Sends :class:`Outgoing` messages with a VK community token.

    ``buttons`` become an inline keyboard of callback buttons (payload ``{"t": data}``, the
    VK adapter turns a press into the same event as Telegram's callback data); what does
    not fit VK's 10-button inline keyboard is dropped with a warning.  ``document`` and
    ``photo`` are uploaded (docs/photos upload pair) and attached, ``text`` goes with them.
    The ``random_id`` is derived from ``msg.key``, so when the broadcaster retries after a
    timeout VK stores the message once.  No pacing, sleeping or retrying here (the client
    should come from :func:`build_vk_sender`, which also turns off vk-api's own retry of
    error 6); the broadcaster paces VK at ``VK_LIMIT`` (~20 requests/s).
    """

    transport = "vk"

    def __init__(self, client: VkClient, *, owns_client: bool = False) -> None:
        self.client = client
        self._owns_client = owns_client

    async def send(self, msg: Outgoing) -> str | None:
        rows = [[OutButton(label, data) for label, data in row] for row in msg.buttons]
        boards = keyboards(rows)
        if len(boards) > 1:
            log.warning("broadcast: %s: more buttons than a VK inline keyboard holds; the rest dropped", msg.key)
        file = None
        if msg.document is not None:
            file = OutFile(msg.document[0], msg.document[1], "document")
        elif msg.photo is not None:
            file = OutFile(msg.photo[0], msg.photo[1], "photo")
        try:
            attachment = await self.client.upload(msg.chat_id, file) if file is not None else None
            message_id = await self.client.send_message(
                msg.chat_id,
                _vk_text(msg),
                random_id=random_id(msg.key, 0),
                keyboard=boards[0] if boards else None,
                attachment=attachment,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify_vk_error(exc)
            raise error from exc
        return str(message_id)

    async def close(self) -> None:
        if self._owns_client:
            self.client.close()


def build_vk_sender(settings) -> VkSender:
    """A VK sender from settings (``VK__TOKEN``, ``VK__API_BASE_URL``) with its own HTTP session."""
    vk_settings = getattr(settings, "vk", settings)
    if vk_settings.token is None:
        raise ValueError("the VK channel needs VK__TOKEN")
    vk = make_vk_api(
        vk_settings.token.get_secret_value(),
        vk_settings.api_base_url,
        requests_per_second=None,  # the broadcaster paces
        retry_too_many=False,  # error 6 must reach the broadcaster as SlowDown
    )
    return VkSender(VkClient(vk, vk_settings.group_id), owns_client=True)

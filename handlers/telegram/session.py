"""The aiogram Bot: API base URL from settings, and retries after 429 (aiogram does not retry)."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter

log = logging.getLogger(__name__)


def _pin_response_types() -> list:
    """Keep aiogram's `Response[T]` classes alive.

    aiogram builds `Response[method.__returning__]` for every API answer; pydantic caches such
    generic classes only weakly, so after a garbage collection each one is rebuilt at a cost of
    milliseconds. Holding them here makes that a one-time cost (measured in bench/load.py).
    """
    from aiogram import methods
    from aiogram.methods.base import Response

    used = (
        methods.GetUpdates, methods.SendMessage, methods.AnswerCallbackQuery, methods.SendDocument,
        methods.SendPhoto, methods.GetMe, methods.SetWebhook, methods.DeleteWebhook,
    )
    return [Response[method.__returning__] for method in used]


_PINNED_RESPONSE_TYPES = _pin_response_types()


class RetryAfterMiddleware(BaseRequestMiddleware):
    """On 429, wait `retry_after` seconds and send the same request again (a few times at most)."""

    def __init__(self, attempts: int = 3, max_wait: float = 60.0) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(self, make_request, bot, method):
        for attempt in range(self.attempts):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self.attempts - 1 or error.retry_after > self.max_wait:
                    raise
                log.warning("429 on %s; retrying after %s s", type(method).__name__, error.retry_after)
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")


def build_bot(token: str, api_base_url: str) -> Bot:
    """A Bot talking to the configured Bot API server (Telegram's, a self-hosted one, or an emulator)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base_url))
    session.middleware(RetryAfterMiddleware())
    return Bot(token=token, session=session)

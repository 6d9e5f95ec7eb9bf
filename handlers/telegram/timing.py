"""How long the bot takes over one update: an aiogram outer middleware feeding the metrics.

The time runs from the update entering the dispatcher to the handler's return. Our handlers send
the reply before they return, so this is "update received → reply sent" (`bot_reply_seconds`).
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject

from bot.metrics import REPLY_SECONDS, UPDATES

TRANSPORT = "telegram"


class UpdateTimer(BaseMiddleware):
    """Observe each update's handling time; optionally keep the raw seconds (for the benchmark)."""

    def __init__(self, samples: list[float] | None = None) -> None:
        self.samples = samples
        self._seconds = REPLY_SECONDS.labels(transport=TRANSPORT)
        self._handled = UPDATES.labels(transport=TRANSPORT)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        started = time.perf_counter()
        try:
            return await handler(event, data)
        finally:
            seconds = time.perf_counter() - started
            self._seconds.observe(seconds)
            self._handled.inc()
            if self.samples is not None:
                self.samples.append(seconds)

"""The aiogram Bot: API base URL from settings, retries after 429 (aiogram does not retry), and
a lean JSON call for the hot path's replies.

aiogram sends every request as multipart form data built from a pydantic model of the method and
parses the answer into pydantic models again: about 0.6 ms of CPU for a message with an inline
keyboard, against 0.2 ms for the same request as a JSON body whose answer is only checked
(`python -m bench.load`). `call_json` is that lean call. It uses the Bot's own HTTP session, API
server and timeout, retries 429 as the Bot does, and on any error hands the answer to aiogram's
`check_response`, so callers get aiogram's exceptions exactly as from `bot.send_message`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import ClientError

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter
from aiogram.methods import TelegramMethod

T = TypeVar("T")
ATTEMPTS = 3  # tries of one request when Telegram answers 429
MAX_WAIT = 60.0  # seconds: a longer retry_after is not waited for here
_JSON = {"Content-Type": "application/json"}

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


async def retrying_after_429(request: Callable[[], Awaitable[T]], name: str, *,
                             attempts: int = ATTEMPTS, max_wait: float = MAX_WAIT) -> T:
    """Run `request`; on 429, wait `retry_after` seconds and run it again (a few times at most)."""
    for attempt in range(attempts):
        try:
            return await request()
        except TelegramRetryAfter as error:
            if attempt == attempts - 1 or error.retry_after > max_wait:
                raise
            log.warning("429 on %s; retrying after %s s", name, error.retry_after)
            await asyncio.sleep(error.retry_after)
    raise AssertionError("unreachable")


class RetryAfterMiddleware(BaseRequestMiddleware):
    """Every aiogram call of the Bot retries after 429 (see `retrying_after_429`)."""

    def __init__(self, attempts: int = ATTEMPTS, max_wait: float = MAX_WAIT) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(self, make_request, bot, method):
        return await retrying_after_429(lambda: make_request(bot, method), type(method).__name__,
                                        attempts=self.attempts, max_wait=self.max_wait)


async def call_json(bot: Bot, method: type[TelegramMethod], payload: dict[str, Any], *,
                    timeout: float | None = None, retry_429: bool = True) -> Any:
    """Call `method` with `payload` (the Bot API's own field names and JSON shapes) as a JSON body;
    return the answer's raw `result`. Errors raise aiogram's exceptions; 429 is retried as the
    dialog Bot's middleware does, unless `retry_429` is off (the broadcaster paces and honours
    429 itself)."""
    session = bot.session
    url = session.api.api_url(token=bot.token, method=method.__api_method__)
    body = json.dumps(payload, ensure_ascii=False).encode()

    def called() -> TelegramMethod:
        """The call as aiogram's model, which its exceptions carry (built only for an error)."""
        try:
            return method(**payload)
        except ValueError:  # pydantic's ValidationError: keep the values as given
            return method.model_construct(**payload)

    async def request() -> Any:
        client = await session.create_session()
        try:
            async with client.post(url, data=body, headers=_JSON,
                                   timeout=session.timeout if timeout is None else timeout) as response:
                status, content = response.status, await response.text()
        except asyncio.TimeoutError as error:
            raise TelegramNetworkError(method=called(), message="Request timeout error") from error
        except ClientError as error:
            raise TelegramNetworkError(method=called(), message=f"{type(error).__name__}: {error}") from error
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if status == 200 and isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        # Anything else is aiogram's to classify; it raises (TelegramRetryAfter, TelegramBadRequest…).
        session.check_response(bot=bot, method=called(), status_code=status, content=content)
        raise TelegramNetworkError(method=called(), message=f"unexpected answer (HTTP {status})")

    if not retry_429:
        return await request()
    return await retrying_after_429(request, method.__name__)


def build_bot(token: str, api_base_url: str) -> Bot:
    """A Bot talking to the configured Bot API server (Telegram's, a self-hosted one, or an emulator)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base_url))
    session.middleware(RetryAfterMiddleware())
    return Bot(token=token, session=session)

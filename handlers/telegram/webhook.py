"""Webhook mode: Telegram POSTs updates; each is journaled before the 200 that acknowledges it.

The secret token header is compared in constant time; a request without it gets 401 and is not
read further. A malformed body gets 200 (so Telegram does not retry it forever) and a log line
without its content. When the database is down the answer is 503, so Telegram delivers again.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web

from handlers.telegram.polling import Intake

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram/webhook"


class WebhookIntake(Intake):
    """Receives webhook POSTs and feeds them to the dispatcher."""

    def __init__(self, *args, secret: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.secret = secret

    async def on_request(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("webhook request with a wrong or missing secret token")
            return web.Response(status=401)
        try:
            parsed = self._parse(await request.json())
        except ValueError:
            parsed = None
        if parsed is None:
            log.warning("malformed webhook update ignored")
            return web.Response(status=200)
        try:
            fresh = await self._journal([parsed])
        except Exception as error:
            log.warning("could not journal a webhook update (%s)", type(error).__name__)
            return web.Response(status=503)
        for update, prefetched in fresh:
            await self._spawn(update, prefetched)
        return web.Response(status=200)

    def install(self, app: web.Application, path: str = WEBHOOK_PATH) -> None:
        app.router.add_post(path, self.on_request)

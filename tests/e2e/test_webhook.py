"""Webhook mode: secret header, journal before acknowledging, duplicates once; health endpoints."""

from __future__ import annotations

import itertools
import time

import aiohttp
import pytest
from aiogram import Dispatcher
from sqlalchemy import func, select

from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from handlers.telegram.router import build_router
from handlers.telegram.session import build_bot
from handlers.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH, WebhookIntake
from handlers.web import build_web_app, serve
from storage.db import create_engine, session_factory
from storage.models import InboxUpdate
from storage.unit_of_work import Database

SECRET = "s3cret-token-for-tests"
_ids = itertools.count(int(time.time()) % 100000 * 1000)


def start_update(user_id: int, update_id: int | None = None) -> dict:
    return {
        "update_id": update_id or next(_ids),
        "message": {
            "message_id": next(_ids), "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": "Тест"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Тест"},
            "text": "/start", "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }


@pytest.fixture
async def webhook(emulator, db, clock):
    bot = build_bot(emulator.token, emulator.base_url)
    dispatcher = Dispatcher()
    dispatcher["engine"] = DialogEngine(db, build_registry(), clock=clock)
    dispatcher.include_router(build_router())
    intake = WebhookIntake(bot, dispatcher, db, secret=SECRET)
    app = build_web_app(db, {"telegram": lambda: True})
    intake.install(app)
    runner, port = await serve(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", intake
    intake.stop()
    await intake.drain()
    await runner.cleanup()
    await bot.session.close()


async def post(url: str, payload, secret: str | None = SECRET) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with aiohttp.ClientSession() as session:
        async with session.post(url + WEBHOOK_PATH, json=payload, headers=headers) as response:
            return response.status


async def inbox_count(db) -> int:
    async with db.unit() as uow:
        return (await uow.session.execute(select(func.count()).select_from(InboxUpdate))).scalar_one()


async def test_a_request_without_the_secret_header_is_refused_and_nothing_is_stored(webhook, db):
    url, _intake = webhook

    assert await post(url, start_update(90001), secret=None) == 401
    assert await post(url, start_update(90001), secret="wrong-secret-wrong") == 401
    assert await inbox_count(db) == 0


async def test_an_update_delivered_twice_is_answered_once(webhook, emulator):
    url, intake = webhook
    user_id = next(_ids)
    update = start_update(user_id)

    assert await post(url, update) == 200
    assert await post(url, update) == 200
    await intake.drain()

    chat = emulator.chat(user_id)
    messages = await chat.wait_idle()
    assert [m.content.startswith("Здравствуйте!") for m in messages] == [True]


async def test_a_malformed_body_is_acknowledged_and_ignored(webhook, db):
    url, _intake = webhook

    assert await post(url, {"update_id": "not a number", "message": 5}) == 200
    assert await inbox_count(db) == 0


async def test_readiness_reports_the_database(webhook):
    url, _intake = webhook
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/readyz") as response:
            body = await response.json()
        async with session.get(url + "/metrics") as metrics:
            text = await metrics.text()

    assert response.status == 200 and body["checks"]["database"] is True
    assert "bot_outbox_backlog" in text


async def test_a_stopped_database_is_reported_as_not_ready():
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    app = build_web_app(Database(session_factory(engine)))
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                body = await response.json()
    finally:
        await runner.cleanup()
        await engine.dispose()

    assert response.status == 503 and body["checks"]["database"] is False


async def test_an_unknown_update_type_is_acknowledged_without_errors(webhook, db):
    url, intake = webhook
    edited = {"update_id": next(_ids), "edited_channel_post": {"message_id": 1, "date": int(time.time()),
                                                                 "chat": {"id": -100, "type": "channel"}, "text": "x"}}

    assert await post(url, edited) == 200
    await intake.drain()
    assert intake.handled == 1

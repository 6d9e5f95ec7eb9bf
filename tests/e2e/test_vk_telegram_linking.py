"""One person in both channels, end to end: registered through the Telegram emulator, linked from the fake VK."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from handlers.vk.adapter import VkAdapter
from handlers.vk.api_session import make_vk_api
from handlers.vk.client import VkClient
from storage.models import Account, Member
from tests.e2e.conftest import say, tap
from tests.handlers.vk.conftest import VkPerson
from tests.support.fake_vk import FakeVk

VK_USER = 300_901


@pytest.fixture
async def vk(engine, db):
    """The VK adapter polling a fake VK server, on the same database as the Telegram bot."""
    fake = FakeVk()
    await fake.start()
    client = VkClient(make_vk_api(fake.token, fake.base_url, requests_per_second=None), fake.group_id)
    adapter = VkAdapter(client, engine, db, wait=0.2, owns_client=True)
    await adapter.start()
    await fake.wait_long_poll_started()
    yield VkPerson(fake, adapter, VK_USER)
    await adapter.stop(timeout=5)
    await fake.stop()
    assert fake.internal_errors == []


async def test_a_profile_registered_in_telegram_is_used_from_vk_after_typing_the_code(tg, vk, db):
    telegram = tg.chat()
    await say(telegram, "/start")
    await tap(telegram, "Всеволожский район")
    await tap(telegram, "Согласен(на)")
    await tap(telegram, "Молодой (начинающий) педагог")
    await say(telegram, "Смирнова Анна Олеговна")
    await tap(telegram, "Школа")
    await say(telegram, "Кудрово")
    await tap(telegram, "МОБУ «СОШ № 2», Кудрово")
    await tap(telegram, "Учитель-предметник")
    await tap(telegram, "Математика и информатика")
    await tap(telegram, "2026")
    await say(telegram, "2001")
    await tap(telegram, "Всё верно")
    await tap(telegram, "🔗 Связать Telegram и VK")
    await tap(telegram, "Получить код")
    texts = [m.content for m in await telegram.messages()]
    code = next(re.search(r"\d{6}", t).group() for t in reversed(texts) if t.startswith("Ваш код связки"))

    await vk.start()
    await vk.tap("Всеволожский район")
    await vk.tap("Согласен(на)")
    await vk.write(f"/link {code}")
    await vk.tap("ВКонтакте")
    await vk.write("/profile")

    assert "ФИО: Смирнова Анна Олеговна" in vk.text()
    async with db.unit() as uow:
        member = (await uow.session.execute(select(Member))).scalar_one()
        accounts = (await uow.session.execute(select(Account).order_by(Account.id))).scalars().all()
    assert member.preferred_transport == "vk"
    assert [(a.transport, a.member_id) for a in accounts] == [("telegram", member.id), ("vk", member.id)]

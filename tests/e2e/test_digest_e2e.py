"""The weekly digest end to end: real aiogram over HTTP through the Telegram Bot API emulator.

A coordinator (registered directly in storage) gets the digest with its PNG chart and XLSX
workbook twice: on demand with /digest, and from the Monday 09:00 send, queued by the digest
job on a simulated clock and delivered by the outbox dispatcher (sendMessage, sendPhoto,
sendDocument). Both files are checked byte for byte: the PNG signature, and the workbook opened
with openpyxl holding the figure the text states.
"""

from __future__ import annotations

import io
import math
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook

from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due
from scheduler.jobs_digest import run_digests
from scheduler.senders import TelegramSender
from storage.models import Role
from tests.e2e.conftest import say
from tests.support.people import registered_in_db, telegram_who

pytestmark = pytest.mark.timeout(120)


async def files_of(chat):
    [photo], [document] = await chat.photos(), await chat.documents()
    return photo, document


async def test_digest_on_demand_arrives_with_its_chart_and_workbook(tg, db, clock):
    coordinator, teacher = tg.chat(), tg.chat()
    await registered_in_db(db, telegram_who(coordinator), clock.now, role=Role.COORDINATOR,
                           name="Кузнецова Елена Викторовна")
    await registered_in_db(db, telegram_who(teacher), clock.now, role=Role.TEACHER, name="Зайцева Полина Андреевна",
                           teaching_start_year=2026, birth_year=2001)

    await say(coordinator, "/digest")
    photo, document = await files_of(coordinator)

    texts = [m.content for m in await coordinator.messages() if m.method == "sendMessage"]
    digest = next(text for text in texts if text.startswith("🗞 Дайджест: Всеволожский район"))
    assert "Зарегистрировано: 1 (новых за неделю: 1)" in digest
    assert photo.data.startswith(b"\x89PNG") and photo.caption.startswith("📊")
    assert document.file_name == "digest-2026-W48.xlsx"
    book = load_workbook(io.BytesIO(document.data))
    assert book["Главное"]["B3"].value == 1


async def test_the_monday_digest_is_sent_once_with_its_png_and_xlsx(tg, db, clock, emulator):
    coordinator = tg.chat()
    await registered_in_db(db, telegram_who(coordinator), clock.now, role=Role.COORDINATOR,
                           name="Кузнецова Елена Викторовна")
    monday_nine = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)  # 09:00 in Moscow
    bot = emulator.make_bot()
    broadcaster = Broadcaster({"telegram": TelegramSender(bot)}, {"telegram": RateLimit(per_second=math.inf)})

    try:
        assert await run_digests(db, monday_nine) == 1
        await dispatch_due(db, broadcaster, monday_nine)
        assert await run_digests(db, monday_nine) == 0  # a second tick (or a restart) sends nothing more
        await dispatch_due(db, broadcaster, monday_nine)
    finally:
        await broadcaster.close()
        await bot.session.close()
    await coordinator.wait_for(3)
    messages = await coordinator.wait_idle()

    assert [m.method for m in messages] == ["sendMessage", "sendPhoto", "sendDocument"]
    assert messages[0].content.startswith("🗞 Дайджест: Всеволожский район\nНеделя 48 (23 ноября – 29 ноября 2026)")
    assert "🗞 Дайджест недели" in messages[0].buttons
    photo, document = await files_of(coordinator)
    assert photo.data.startswith(b"\x89PNG")
    assert document.file_name == "digest-2026-W48.xlsx"
    assert load_workbook(io.BytesIO(document.data)).sheetnames[0] == "Главное"

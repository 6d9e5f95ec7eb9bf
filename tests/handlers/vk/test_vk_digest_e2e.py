"""The weekly digest end to end through the fake VK server (as in Telegram: tests/e2e/test_digest_e2e.py).

A coordinator in VK gets the digest text, its PNG chart as a photo attachment and its XLSX workbook
as a document: on demand with /digest (the VK adapter's reply) and from the Monday 09:00 send
(queued by the digest job, delivered by the outbox dispatcher through VK). The files are checked
byte for byte as the fake's upload servers received them.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook

from scheduler.dispatch import dispatch_due
from scheduler.jobs_digest import run_digests
from storage.models import Role
from tests.support.people import registered_in_db, vk_who
from tests.support.scenarios import vk_broadcaster

pytestmark = pytest.mark.timeout(60)

COORDINATOR, TEACHER = 300_951, 300_952


def uploaded(fake, kind: str) -> dict:
    [upload] = [item for item in fake.uploads if item["kind"] == kind]
    return upload


async def test_digest_on_demand_arrives_in_vk_with_its_chart_as_a_photo_and_workbook_as_a_document(
    vk_person, fake, db, clock
):
    coordinator = vk_person(COORDINATOR)
    await registered_in_db(db, vk_who(COORDINATOR), clock.now, role=Role.COORDINATOR,
                           name="Кузнецова Елена Викторовна")
    await registered_in_db(db, vk_who(TEACHER), clock.now, role=Role.TEACHER, name="Зайцева Полина Андреевна",
                           teaching_start_year=2026, birth_year=2001)

    await coordinator.write("/digest")

    digest = next(text for text in coordinator.texts() if text.startswith("🗞 Дайджест: Всеволожский район"))
    assert "Зарегистрировано: 1 (новых за неделю: 1)" in digest
    photo, document = uploaded(fake, "photo"), uploaded(fake, "doc")
    assert photo["bytes"].startswith(b"\x89PNG")
    assert load_workbook(io.BytesIO(document["bytes"]))["Главное"]["B3"].value == 1
    assert fake.calls_to("docs.save")[0]["params"]["title"] == "digest-2026-W48.xlsx"
    with_files = [m for m in coordinator.last if m["attachments"]]
    assert [m["attachments"][0].split("-")[0] for m in with_files] == ["photo", "doc"]
    assert with_files[0]["attachments"] == [photo["saved_as"]] and with_files[1]["attachments"] == [
        document["saved_as"]]
    assert with_files[0]["text"].startswith("📊")


async def test_the_monday_digest_reaches_a_vk_coordinator_once_with_its_png_and_xlsx(
    vk_person, fake, vk_client, db, clock
):
    coordinator = vk_person(COORDINATOR)
    await coordinator.start()
    await registered_in_db(db, vk_who(COORDINATOR), clock.now, role=Role.COORDINATOR,
                           name="Кузнецова Елена Викторовна")
    monday_nine = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)  # 09:00 in Moscow
    sent_before = len(fake.messages_to(COORDINATOR))
    broadcaster = vk_broadcaster(vk_client)

    try:
        assert await run_digests(db, monday_nine) == 1
        await dispatch_due(db, broadcaster, monday_nine)
        assert await run_digests(db, monday_nine) == 0  # a second tick (or a restart) sends nothing more
        await dispatch_due(db, broadcaster, monday_nine)
    finally:
        await broadcaster.close()

    text, chart, workbook = fake.messages_to(COORDINATOR)[sent_before:]
    assert text["text"].startswith("🗞 Дайджест: Всеволожский район\nНеделя 48 (23 ноября – 29 ноября 2026)")
    assert "🗞 Дайджест недели" in [button["label"] for button in fake.buttons_of(text)]
    assert chart["attachments"] == [uploaded(fake, "photo")["saved_as"]]
    assert workbook["attachments"] == [uploaded(fake, "doc")["saved_as"]]
    assert uploaded(fake, "photo")["bytes"].startswith(b"\x89PNG")
    assert load_workbook(io.BytesIO(uploaded(fake, "doc")["bytes"])).sheetnames[0] == "Главное"
    assert fake.calls_to("docs.save")[0]["params"]["title"] == "digest-2026-W48.xlsx"

"""The digest through the engine: /digest and the menu item, earlier weeks, the denominators flow."""

from __future__ import annotations

import io

from openpyxl import load_workbook
from sqlalchemy import select

from dialogs.engine import check_flow
from dialogs.flows import digest as flows
from dialogs.registry import build_registry
from storage.models_digest import DigestTarget
from storage.services.invites import create_invite
from tests.support.driver import EngineChat, register_teacher


async def register_coordinator(person: EngineChat, db, clock, *, municipality_code="vsevolozhsky",
                               municipality="Всеволожский район") -> None:
    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code=municipality_code, now=clock.now)
        await uow.commit()
    await person.send("/start")
    await person.press(municipality)
    await person.press("Согласен(на)")
    await person.press("У меня есть код приглашения")
    await person.send(code)
    await person.send("Кузнецова Елена Викторовна")
    await person.press("Всё верно")


async def test_digest_command_sends_the_text_with_the_chart_and_the_workbook(chat, db, clock):
    coordinator = chat(5001)
    await register_coordinator(coordinator, db, clock)
    await register_teacher(chat(5002))

    reply = await coordinator.send("/digest")

    message = reply.messages[-1]
    assert message.text.startswith("🗞 Дайджест: Всеволожский район\nНеделя 48 (23 ноября – 29 ноября 2026), на 26.11")
    assert "Зарегистрировано: 1 (новых за неделю: 1)" in message.text
    assert [(f.kind, f.name) for f in message.files] == [("photo", "digest-2026-W48.png"),
                                                         ("document", "digest-2026-W48.xlsx")]
    assert message.files[0].content.startswith(b"\x89PNG")
    book = load_workbook(io.BytesIO(message.files[1].content))
    assert book["Главное"]["B3"].value == 1


async def test_the_menu_offers_the_digest_to_coordinators_but_not_to_teachers(chat, db, clock):
    coordinator, teacher = chat(5011), chat(5012)
    await register_coordinator(coordinator, db, clock)
    await register_teacher(teacher)

    await coordinator.send("/menu")
    coordinator_menu = coordinator.buttons()
    await teacher.send("/menu")
    teacher_menu = teacher.buttons()
    await teacher.send("/digest")

    assert "🗞 Дайджест недели" in coordinator_menu and "🎯 Целевые показатели" in coordinator_menu
    assert "🗞 Дайджест недели" not in teacher_menu
    assert teacher.texts()[0] == "Это действие вам недоступно."


async def test_the_menu_item_opens_the_digest_and_earlier_weeks_can_be_chosen(chat, db, clock):
    coordinator = chat(5021)
    await register_coordinator(coordinator, db, clock)
    await coordinator.send("/menu")

    await coordinator.press("🗞 Дайджест недели")
    current = coordinator.last_text()
    await coordinator.press("◀ Неделя раньше")
    earlier = coordinator.last
    await coordinator.press("Выбрать неделю")
    await coordinator.press("09.11 – 15.11.2026 (неделя 46)")
    picked = coordinator.last_text()
    await coordinator.press("Неделя позже ▶")

    assert "Неделя 48" in current
    assert "Неделя 47 (16 ноября – 22 ноября 2026)" in earlier.messages[-1].text
    assert [f.name for f in earlier.messages[-1].files] == ["digest-2026-W47.png", "digest-2026-W47.xlsx"]
    assert "Неделя 46 (9 ноября – 15 ноября 2026)" in picked
    assert "Неделя 47" in coordinator.last_text()


async def test_a_coordinator_enters_a_denominator_and_the_tracker_uses_it(chat, db, clock):
    coordinator = chat(5031)
    await register_coordinator(coordinator, db, clock)
    await register_teacher(chat(5032))
    await coordinator.send("/menu")
    await coordinator.press("🎯 Целевые показатели")

    await coordinator.press("Педагоги до 35 лет со стажем до 3 лет")
    await coordinator.send("сорок")
    refused = coordinator.texts()[0]
    await coordinator.send("240")
    saved = coordinator.texts()
    await coordinator.send("/digest")

    assert refused.startswith("Напишите целое число")
    assert saved[0].startswith("Сохранено: 240.")
    assert "• Педагоги до 35 лет со стажем до 3 лет в муниципальной системе образования: 240" in saved[-1]
    assert "Цель «не менее 70 % до 35 лет вовлечены»: 0% (0 из 240) ⚠️" in coordinator.last_text()
    async with db.unit() as uow:
        [target] = (await uow.session.execute(select(DigestTarget))).scalars().all()
    assert (target.kind, target.value) == ("young_teachers_total", 240)


async def test_each_coordinator_sees_their_own_municipality(chat, db, clock):
    coordinator = chat(5041)
    await register_coordinator(coordinator, db, clock, municipality_code="novotroitsk", municipality="Новотроицк")

    await coordinator.send("/digest")

    assert coordinator.last_text().startswith("🗞 Дайджест: Новотроицк")


async def test_a_regional_coordinator_gets_the_comparison_of_their_region(chat, db, clock):
    regional = chat(5051)
    async with db.unit() as uow:
        code = await create_invite(uow, role="regional", region="Ленинградская область", now=clock.now)
        await uow.commit()
    await regional.send("/start")
    await regional.press("Всеволожский район")
    await regional.press("Согласен(на)")
    await regional.press("У меня есть код приглашения")
    await regional.send(code)
    await regional.send("Региональная Ирина Сергеевна")
    await regional.press("Всё верно")
    await regional.send("/menu")
    menu = regional.buttons()

    reply = await regional.send("/digest")

    message = reply.messages[-1]
    assert "🗞 Дайджест недели" in menu and "🎯 Целевые показатели" not in menu
    assert message.text.startswith("🗞 Региональный дайджест: Ленинградская область")
    assert "📍 Всеволожский район" in message.text and "📍 Кировский район Ленинградской области" in message.text
    assert [f.kind for f in message.files] == ["photo", "document"]
    assert "🎯 Целевые показатели" not in regional.buttons()


def test_every_digest_screen_is_reachable_and_every_target_exists():
    registry = build_registry()
    for flow in flows.FLOWS:
        assert check_flow(flow, list(registry.flows)) == []
    targets = {button.go for flow in flows.FLOWS for screen in flow.screens for button in screen.buttons}
    targets |= {screen.go for flow in flows.FLOWS for screen in flow.screens}
    for flow in flows.FLOWS:
        for screen in flow.screens:
            assert screen.id == flow.start or screen.id in targets or screen.id in ("muni", "show"), screen.id

"""Reference data import: municipalities with their rules and wording, organisations."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from storage.models import Municipality
from storage.services.reference import DEMO_FILE, ReferenceError, import_reference


async def test_the_demo_municipalities_carry_their_own_questionnaire_wording(db):
    async with db.unit() as uow:
        vsevolozhsky = (await uow.session.execute(select(Municipality).where(Municipality.code == "vsevolozhsky"))).scalar_one()

    assert vsevolozhsky.texts["club_name_genitive"] == "Клуба молодых педагогов Всеволожского района"
    assert vsevolozhsky.young_max_age == 35


async def test_unknown_wording_keys_and_timezones_are_refused_with_the_entry(db, tmp_path: Path):
    bad_texts = tmp_path / "bad.yaml"
    bad_texts.write_text("municipalities:\n  - {code: x, name: X, texts: {club: Y}}\n", encoding="utf-8")
    bad_zone = tmp_path / "zone.yaml"
    bad_zone.write_text("municipalities:\n  - {code: y, name: Y, timezone: Mars/Base}\n", encoding="utf-8")

    async with db.unit() as uow:
        with pytest.raises(ReferenceError, match="municipality #1: unknown texts club"):
            await import_reference(uow, bad_texts)
        with pytest.raises(ReferenceError, match="unknown timezone"):
            await import_reference(uow, bad_zone)


async def test_importing_the_same_file_twice_adds_nothing(db):
    async with db.unit() as uow:
        report = await import_reference(uow, DEMO_FILE)

    assert (report.municipalities, report.organisations) == (0, 0)

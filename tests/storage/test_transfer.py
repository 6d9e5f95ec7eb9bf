"""Moving all data from SQLite to PostgreSQL (and the target keeps working)."""

from __future__ import annotations

from sqlalchemy import select

from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import Account, Consent, Member, Municipality
from storage.services.transfer import TransferError, dump, load
from storage.unit_of_work import Database
from tests.support.driver import EngineChat, register_teacher


async def test_sqlite_data_moves_to_postgres_and_registration_goes_on_there(chat, db, clock, postgres_url, tmp_path):
    await register_teacher(chat(1201))
    dump_file = tmp_path / "dump.jsonl"
    counts = await dump(db, dump_file)

    target_engine = create_engine(postgres_url)
    await upgrade(target_engine)
    target = Database(session_factory(target_engine))
    loaded = await load(target, dump_file)
    second = EngineChat(DialogEngine(target, build_registry(), clock=clock), 1202)
    await register_teacher(second, name="Соколова Дарья Андреевна")

    async with target.unit() as uow:
        names = sorted((await uow.session.execute(select(Member.full_name))).scalars())
        municipalities = (await uow.session.execute(select(Municipality))).scalars().all()
        accounts = (await uow.session.execute(select(Account))).scalars().all()
        consents = (await uow.session.execute(select(Consent))).scalars().all()
    await target_engine.dispose()
    assert loaded == counts
    assert names == ["Иванова Мария Петровна", "Соколова Дарья Андреевна"]
    assert len(municipalities) == 5 and len(accounts) == 2 and len(consents) == 2
    assert all(consent.given_at.tzinfo is not None for consent in consents)


async def test_loading_over_a_database_with_people_in_it_is_refused(chat, db, tmp_path):
    await register_teacher(chat(1203))
    dump_file = tmp_path / "dump.jsonl"
    await dump(db, dump_file)

    try:
        await load(db, dump_file)
    except TransferError as error:
        assert "not empty" in str(error)
    else:
        raise AssertionError("loading over existing data must be refused")

"""The hot path's driver SQL and the in-thread SQLite connection store what the ORM would, and fail
the way the rest of the code expects."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timezone

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from dialogs.model import ExternalId
from storage import db as storage_db
from storage import driver_sql
from storage.db import create_engine, session_factory
from storage.driver_sql import DriverStatement
from storage.models import Account, ChannelCursor, Conversation, InboxUpdate, Member, Role, utcnow
from storage.repositories.conversations import DialogState
from storage.repositories.handling import Outcome, Start
from storage.repositories.inbox import journal
from storage.sqlite_inline import InlineConnection
from storage.unit_of_work import Database


async def test_state_saved_as_driver_sql_reads_back_through_the_orm_unchanged(db):
    state = DialogState("registration", "org", {"q": "Кудрово <b>&", "n": [1, 2]}, ["role", "kind"],
                        {"items": [["Школа №1", "c", "7"]]}, "ab12")
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "501") is None
        await uow.conversations.save("telegram", "501", state)
        await uow.commit()
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "501") == state
        row = (await uow.session.execute(select(Conversation).where(Conversation.external_id == "501"))).scalar_one()
    assert (row.flow, row.screen, row.data, row.stack, row.view, row.nonce, row.version) == (
        state.flow, state.screen, state.data, state.stack, state.view, state.nonce, 1)
    assert row.updated_at.tzinfo is not None and row.updated_at.utcoffset() == timezone.utc.utcoffset(None)

    state.data["q"] = "Мурино"
    async with db.unit() as uow:  # the upsert replaces the row
        await uow.conversations.save("telegram", "501", state)
        await uow.commit()
    async with db.unit() as uow:
        assert (await uow.conversations.load("telegram", "501")).data == {"q": "Мурино", "n": [1, 2]}
        assert (await uow.session.get(Conversation, ("telegram", "501"))).version == 2  # every save raises it


async def test_the_journal_returns_only_new_ids_and_a_claim_takes_each_update_once(db):
    engine = db.engine
    assert await journal(engine, "telegram", [("1", "{}"), ("2", None)]) == {"1", "2"}
    assert await journal(engine, "telegram", [("2", "{}"), ("3", "{}")]) == {"3"}
    async with db.unit() as uow:
        assert await uow.inbox.claim("telegram", "1") is True
        await uow.commit()
    async with db.unit() as uow:
        assert await uow.inbox.claim("telegram", "1") is False
        assert await uow.inbox.claim("telegram", "never-journaled") is True
        rows = (await uow.session.execute(select(InboxUpdate).order_by(InboxUpdate.update_id))).scalars().all()
    assert [(row.update_id, row.handled_at is not None, row.payload) for row in rows] == [
        ("1", True, None), ("2", False, None), ("3", False, "{}")]
    assert rows[0].received_at.tzinfo is not None and rows[0].seq < rows[2].seq


async def test_member_lookup_sees_changes_not_yet_flushed(db):
    who = ExternalId("telegram", "777", "777")
    async with db.unit() as uow:
        assert await uow.accounts.member(who) is None
        member = Member(role=Role.TEACHER, full_name="Иванова Анна Сергеевна")
        uow.session.add(member)
        uow.session.add(Account(transport="telegram", external_id="777", chat_id="777"))
        await uow.session.flush()
        account = await uow.accounts.get(who)
        account.member_id = member.id  # pending, not flushed: an ORM query would autoflush it
        assert await uow.accounts.member(who) is member


@pytest.mark.sqlite_only
async def test_sqlite_statements_run_in_the_calling_thread(db):
    threads = threading.active_count()
    async with db.unit() as uow:
        connection = await uow.session.connection()
        raw = await connection.get_raw_connection()
        assert isinstance(raw.driver_connection, InlineConnection)
        await uow.conversations.load("telegram", "1")
    assert threading.active_count() == threads  # no helper thread per connection, as aiosqlite starts


@pytest.mark.sqlite_only
async def test_sqlite_errors_arrive_as_sqlalchemy_errors(db, monkeypatch):
    async with db.unit() as uow:  # a constraint: IntegrityError, and the session recovers
        uow.session.add(Conversation(transport="t", external_id="1", flow="f", screen="s", nonce=""))
        uow.session.add(Conversation(transport="t", external_id="1", flow="f", screen="s", nonce=""))
        with pytest.raises(IntegrityError):
            await uow.flush()
        await uow.rollback()
        assert await uow.conversations.load("t", "1") is None

    # Another process holding the write lock: the wait is bounded, then an OperationalError (the
    # dialog engine answers it with "try again").
    monkeypatch.setattr(storage_db, "BUSY_TIMEOUT", 0.2)
    engine = create_engine(db.url)
    other = sqlite3.connect(db.url.split(":///", 1)[1], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="locked"):
            async with Database(session_factory(engine)).unit() as uow:
                await uow.conversations.save("t", "2", DialogState("f", "s"))
                await uow.commit()
    finally:
        other.execute("ROLLBACK")
        other.close()
        await engine.dispose()


async def test_driver_sql_is_part_of_the_units_transaction(db):
    """The statements run in the transaction the unit began: a rollback undoes them with the ORM's
    changes, and a commit keeps both."""
    async with db.unit() as uow:
        await uow.conversations.save("telegram", "601", DialogState("registration", "org"))
        uow.session.add(Member(role=Role.TEACHER, full_name="Петрова Ольга Ивановна"))
        await uow.flush()
        await uow.rollback()
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "601") is None
        assert (await uow.session.execute(select(Member))).scalars().all() == []
        await uow.conversations.save("telegram", "601", DialogState("registration", "org"))
        uow.session.add(Member(role=Role.TEACHER, full_name="Петрова Ольга Ивановна"))
        await uow.commit()
    async with db.unit() as uow:
        assert (await uow.conversations.load("telegram", "601")).screen == "org"
        assert len((await uow.session.execute(select(Member))).scalars().all()) == 1


async def test_driver_sql_errors_arrive_as_sqlalchemy_errors_and_the_unit_recovers(db):
    _cursor = ChannelCursor.__table__.c
    insert = DriverStatement("INSERT INTO channel_cursors (name, position, updated_at) VALUES (?, ?, ?)",
                             [_cursor.name, _cursor.position, _cursor.updated_at])
    async with db.unit() as uow:
        await insert.execute(uow.session, "vk", "1", utcnow())
        with pytest.raises(IntegrityError):
            await insert.execute(uow.session, "vk", "2", utcnow())
        await uow.rollback()
        await insert.execute(uow.session, "vk", "3", utcnow())  # a new transaction on the same unit
        await uow.commit()
    async with db.unit() as uow:
        assert await uow.inbox.cursor("vk") == "3"


async def test_driver_sql_runs_straight_on_the_driver_of_each_backend(db):
    """If a SQLAlchemy upgrade changes the asyncpg adapter's internals this fails, instead of
    driver SQL quietly falling back to the slower engine path."""
    async with db.unit() as uow:
        await uow.conversations.load("telegram", "1")
        runner = uow.session.info[driver_sql._RUNNER]
    expected = driver_sql._SqliteRunner if db.url.startswith("sqlite") else driver_sql._AsyncpgRunner
    assert type(runner) is expected


async def test_an_update_starts_with_the_state_and_ends_saving_it_and_marking_the_update_handled(db):
    await journal(db.engine, "telegram", [("71", "{}"), ("72", "{}")])
    async with db.unit() as uow:
        await uow.conversations.save("telegram", "901", DialogState("registration", "org", {"q": "Мурино"}))
        await uow.commit()

    async with db.unit() as uow:
        start = await uow.start_update("telegram", "901", "71")
        assert start == Start(True, DialogState("registration", "org", {"q": "Мурино"}), 1)
        assert await uow.finish_update("telegram", "901", "71", DialogState("registration", "role"),
                                       start) is Outcome.SAVED
        await uow.commit()
    async with db.unit() as uow:  # the same update again: a duplicate
        assert await uow.start_update("telegram", "901", "71") == Start(False, None)
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "901") == DialogState("registration", "role")
        journaled = {row.update_id: row for row in (await uow.session.execute(select(InboxUpdate))).scalars()}
    assert journaled["71"].handled_at is not None and journaled["71"].payload is None
    assert journaled["72"].handled_at is None and journaled["72"].payload == "{}"

    async with db.unit() as uow:  # never journaled (a command from a test, a replayed webhook): to be handled
        assert await uow.start_update("telegram", "902", "73") == Start(True, None)
        assert await uow.start_update("telegram", "902", None) == Start(True, None)


async def test_an_update_changes_nothing_unless_its_end_saves(db):
    """The end saves the state and marks the update handled together: a unit closed without a
    commit (the flow failed after writing) leaves both as they were."""
    await journal(db.engine, "telegram", [("75", "{}")])
    async with db.unit() as uow:
        start = await uow.start_update("telegram", "906", "75")
        uow.session.add(Member(role=Role.TEACHER, full_name="Лебедева Анна Игоревна"))
        await uow.flush()
        assert await uow.finish_update("telegram", "906", "75", DialogState("registration", "org"),
                                       start) is Outcome.SAVED
    async with db.unit() as uow:
        assert await uow.start_update("telegram", "906", "75") == Start(True, None)
        assert (await uow.session.execute(select(Member).where(Member.full_name.startswith("Лебедева")))).first() is None


async def test_the_member_id_read_at_the_start_is_forgotten_when_accounts_may_have_changed(db):
    async with db.unit() as uow:
        member = Member(role=Role.TEACHER, full_name="Кузнецова Мария Петровна")
        uow.session.add(member)
        uow.session.add(Account(transport="telegram", external_id="903", chat_id="903"))
        await uow.commit()
    async with db.unit() as uow:  # a statement through the session may change accounts
        assert await uow.start_update("telegram", "903", "73") == Start(True, None)
        await uow.session.execute(update(Account).where(Account.external_id == "903").values(member_id=member.id))
        assert (await uow.accounts.member(ExternalId("telegram", "903", "903"))).full_name == "Кузнецова Мария Петровна"

    async with db.unit() as uow:  # so may a flush (registration adds the account and member)
        assert await uow.start_update("telegram", "904", "74") == Start(True, None)
        newcomer = Member(role=Role.MENTOR, full_name="Орлов Илья Сергеевич")
        uow.session.add(newcomer)
        await uow.flush()
        uow.session.add(Account(transport="telegram", external_id="904", chat_id="904", member_id=newcomer.id))
        assert await uow.accounts.member(ExternalId("telegram", "904", "904")) is newcomer


async def test_orm_changes_not_yet_flushed_land_with_the_state_or_not_at_all(db):
    """On PostgreSQL the end would otherwise commit on its own, and the commit's flush fail after it:
    the update marked handled, the person's answer lost."""
    await journal(db.engine, "telegram", [("95", "{}")])
    async with db.unit() as uow:
        uow.session.add(Account(transport="telegram", external_id="909", chat_id="909"))
        await uow.commit()

    with pytest.raises(IntegrityError):
        async with db.unit() as uow:
            start = await uow.start_update("telegram", "909", "95")
            uow.session.add(Account(transport="telegram", external_id="909", chat_id="909"))  # fails at flush
            await uow.finish_update("telegram", "909", "95", DialogState("registration", "org"), start)
            await uow.commit()
    async with db.unit() as uow:
        assert await uow.start_update("telegram", "909", "95") == Start(True, None)


async def test_two_replicas_given_the_same_update_handle_it_once(db):
    """PostgreSQL locks nothing between the start and the end: both replicas start, the first end
    saves, the second finds the update handled and saves nothing. SQLite has one writer at a time:
    the second waits for the first and then leaves the update."""
    await journal(db.engine, "telegram", [("81", "{}")])
    async with db.unit() as uow:
        await uow.conversations.save("telegram", "905", DialogState("registration", "org"))
        await uow.commit()

    async def second_replica():
        async with db.unit() as uow:
            start = await uow.start_update("telegram", "905", "81")
            if not start.ours:
                return None
            outcome = await uow.finish_update("telegram", "905", "81", DialogState("registration", "kind"), start)
            if outcome is Outcome.SAVED:
                await uow.commit()
            return outcome

    async with db.unit() as first:
        start = await first.start_update("telegram", "905", "81")
        assert start.ours
        first.session.add(Member(role=Role.TEACHER, full_name="Смирнова Ольга Викторовна"))  # a flow that writes: the end runs in the unit's transaction
        await first.flush()
        second = asyncio.create_task(second_replica())
        assert await first.finish_update("telegram", "905", "81", DialogState("registration", "role"),
                                         start) is Outcome.SAVED
        await asyncio.sleep(0.3)
        assert not second.done()  # waiting for the journal row (PostgreSQL) or the connection (SQLite)
        await first.commit()
    expected = Outcome.DUPLICATE if db.url.startswith("postgresql") else None
    assert await asyncio.wait_for(second, 10) is expected
    async with db.unit() as uow:
        assert (await uow.conversations.load("telegram", "905")).screen == "role"


@pytest.mark.postgres_only
async def test_a_state_changed_between_the_start_and_the_end_is_a_conflict_and_nothing_is_saved(db):
    await journal(db.engine, "telegram", [("91", "{}"), ("92", "{}")])
    async with db.unit() as first, db.unit() as second:
        one = await first.start_update("telegram", "907", "91")
        other = await second.start_update("telegram", "907", "92")
        assert one == other == Start(True, None, 0)
        assert await second.finish_update("telegram", "907", "92", DialogState("registration", "org"),
                                          other) is Outcome.SAVED
        await second.commit()
        assert await first.finish_update("telegram", "907", "91", DialogState("registration", "role"),
                                         one) is Outcome.CONFLICT
    async with db.unit() as uow:
        assert await uow.start_update("telegram", "907", "91") == Start(True, DialogState("registration", "org"), 1)
        assert await uow.start_update("telegram", "907", "92") == Start(False, None)


@pytest.mark.postgres_only
async def test_a_state_erased_between_the_start_and_the_end_is_not_written_back(db):
    """The person's data erased meanwhile (their /forget from another channel, the retention job):
    the state read at the start, which may hold what they typed, must not come back."""
    await journal(db.engine, "telegram", [("96", "{}")])
    async with db.unit() as uow:
        await uow.conversations.save("telegram", "910", DialogState("registration", "name", {"name": "Попова Е. А."}))
        await uow.commit()
    async with db.unit() as handling, db.unit() as eraser:
        start = await handling.start_update("telegram", "910", "96")
        await eraser.conversations.forget("telegram", "910")
        await eraser.commit()
        assert await handling.finish_update("telegram", "910", "96", start.state, start) is Outcome.CONFLICT
    async with db.unit() as uow:
        assert await uow.start_update("telegram", "910", "96") == Start(True, None)


async def test_a_state_the_update_itself_erased_is_saved_afresh(db):
    await journal(db.engine, "telegram", [("97", "{}")])
    async with db.unit() as uow:
        await uow.conversations.save("telegram", "911", DialogState("privacy", "confirm", {"name": "Попова Е. А."}))
        await uow.commit()
    async with db.unit() as uow:
        start = await uow.start_update("telegram", "911", "97")
        await uow.conversations.forget("telegram", "911")
        assert await uow.finish_update("telegram", "911", "97", DialogState("start", "erased"), start) is Outcome.SAVED
        await uow.commit()
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "911") == DialogState("start", "erased")


async def simple_queries_of(db, body) -> list[str]:
    """The simple queries (BEGIN, COMMIT, ROLLBACK) a unit running `body(uow)` sent on PostgreSQL."""
    sent: list[str] = []
    async with db.unit() as uow:
        raw = (await (await driver_sql.connection_of(uow.session)).get_raw_connection()).driver_connection

        def logger(record) -> None:
            sent.append(record.query.split()[0].rstrip(";").upper())

        raw.add_query_logger(logger)
        try:
            await body(uow)
        finally:
            await asyncio.sleep(0.05)  # asyncpg calls the loggers soon, not at once
            raw.remove_query_logger(logger)
    return sent


@pytest.mark.postgres_only
async def test_an_update_that_changes_only_the_dialog_state_sends_no_begin_and_commit(db):
    """Two round trips, not four: the start and the end are each a transaction of their own. A flow
    that writes anything else still gets the unit's transaction, with the end inside it. (asyncpg
    tells its query loggers of simple queries such as BEGIN and COMMIT, not of prepared ones.)"""
    await journal(db.engine, "telegram", [("93", "{}"), ("94", "{}")])

    async def statements_of(writes: bool) -> list[str]:
        async def body(uow) -> None:
            update_id = "94" if writes else "93"
            start = await uow.start_update("telegram", "908", update_id)
            if writes:
                uow.session.add(Member(role=Role.TEACHER, full_name="Васильева Ирина Олеговна"))
                await uow.flush()
            assert await uow.finish_update("telegram", "908", update_id, DialogState("registration", "org"),
                                           start) is Outcome.SAVED
            await uow.commit()

        return await simple_queries_of(db, body)

    assert await statements_of(writes=False) == []
    assert await statements_of(writes=True) == ["BEGIN", "COMMIT"]


@pytest.mark.postgres_only
async def test_a_unit_that_only_reads_through_the_orm_sends_no_begin_and_commit(db):
    """A registered person's menu: their member read through the ORM, then the end of the update.
    Two round trips, not four."""
    await journal(db.engine, "telegram", [("95", "{}")])
    async with db.unit() as uow:
        uow.session.add(Member(role=Role.TEACHER, full_name="Васильева Ирина Олеговна"))
        await uow.commit()

    async def registered_menu(uow) -> None:
        start = await uow.start_update("telegram", "909", "95")
        assert (await uow.session.execute(select(Member.full_name))).scalar_one() == "Васильева Ирина Олеговна"
        assert await uow.finish_update("telegram", "909", "95", DialogState("menu", "main"), start) is Outcome.SAVED
        await uow.commit()

    assert await simple_queries_of(db, registered_menu) == []
    async with db.unit() as uow:
        assert await uow.conversations.load("telegram", "909") == DialogState("menu", "main")


@pytest.mark.postgres_only
async def test_writes_after_a_first_read_are_one_transaction(db):
    """The transaction begins at the first write; all writes are in it: a failure after the first
    leaves none of them."""
    async def body(uow) -> None:
        await uow.session.execute(select(Member.id))  # outside the transaction
        uow.session.add(Member(role=Role.TEACHER, full_name="Первая Запись"))
        await uow.flush()
        uow.session.add(Account(transport="telegram", external_id="912", chat_id="912", member_id=10**9))
        with pytest.raises(IntegrityError):  # no such member
            await uow.flush()
        await uow.rollback()

    assert await simple_queries_of(db, body) == ["BEGIN", "ROLLBACK"]
    async with db.unit() as uow:
        assert (await uow.session.execute(select(Member.id))).first() is None


@pytest.mark.postgres_only
@pytest.mark.parametrize("lock", ["row", "advisory"])
async def test_a_locking_read_that_comes_first_begins_the_transaction_and_holds_its_lock(db, lock):
    async with db.unit() as uow:
        uow.session.add(Member(role=Role.TEACHER, full_name="Запертая Запись"))
        await uow.commit()
    async with db.unit() as holder, db.unit() as other:
        if lock == "row":
            await holder.session.execute(select(Member.id).with_for_update())
            with pytest.raises(DBAPIError, match="could not obtain lock"):  # held: the lock lives in a transaction
                await other.session.execute(select(Member.id).with_for_update(nowait=True))
        else:
            await holder.session.execute(text("SELECT pg_advisory_xact_lock(4242)"))
            assert (await other.session.execute(text("SELECT pg_try_advisory_xact_lock(4242)"))).scalar() is False


def test_only_selects_that_neither_lock_nor_change_anything_skip_the_transaction():
    from storage.asyncpg_reads import plain_read

    assert plain_read("SELECT members.id FROM members WHERE members.id = $1")
    assert plain_read("  select 1")
    for statement in ("SELECT members.id FROM members FOR UPDATE", "SELECT id FROM members FOR NO KEY UPDATE",
                      "SELECT id FROM members FOR SHARE SKIP LOCKED", "SELECT pg_advisory_xact_lock(1)",
                      "SELECT pg_try_advisory_lock(1)", "SELECT nextval('members_id_seq')",
                      "SELECT id INTO TEMPORARY copied FROM members",
                      "WITH x AS (DELETE FROM inbox RETURNING 1) SELECT * FROM x", "UPDATE inbox SET reply = NULL",
                      "INSERT INTO members (id) VALUES (1)"):
        assert not plain_read(statement), statement

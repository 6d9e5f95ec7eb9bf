"""The database briefly unavailable: a clear "try again", nothing answered is lost, recovery by itself."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from storage import db as storage_db
from dialogs.engine import DialogEngine
from dialogs.flows import texts as T
from dialogs.registry import build_registry
from storage.db import create_engine, session_factory
from storage.unit_of_work import Database
from tests.conftest import prepare
from tests.support.driver import EngineChat
from tests.support.tcp_proxy import TcpProxy


async def _behind_a_proxy(postgres_url, clock):
    prepared = await prepare(postgres_url)
    await prepared.engine.dispose()
    url = make_url(postgres_url)
    proxy = await TcpProxy(url.host, url.port).start()
    engine = create_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
    return proxy, engine, EngineChat(DialogEngine(Database(session_factory(engine)), build_registry(), clock=clock), 801)


async def test_a_database_outage_gets_try_again_and_loses_nothing(postgres_url, clock):
    proxy, engine, person = await _behind_a_proxy(postgres_url, clock)
    try:
        await person.send("/start")
        await person.press("Всеволожский район")
        await person.press("Согласен(на)")
        await person.press("Наставник")

        proxy.cut()
        during = await person.send("Петров Пётр Петрович")
        proxy.restore()
        after = await person.send("Петров Пётр Петрович")
    finally:
        await proxy.stop()
        await engine.dispose()

    assert during.messages[0].text == T.TRY_AGAIN
    assert after.messages[-1].text == "Где вы работаете?"


async def test_a_connection_that_died_while_resting_is_replaced_before_use(postgres_url, clock, monkeypatch):
    """Pooled connections are pinged when they have rested (here: always); one that died in the
    meantime (a database restart, a firewall) is replaced, and nobody sees "try again"."""
    monkeypatch.setattr(storage_db, "PING_IDLE", 0.0)
    proxy, engine, person = await _behind_a_proxy(postgres_url, clock)
    try:
        await person.send("/start")
        await person.press("Всеволожский район")
        proxy.cut()  # the pooled connection dies while nobody uses it
        proxy.restore()
        reply = await person.press("Согласен(на)")
    finally:
        await proxy.stop()
        await engine.dispose()

    assert [message.text for message in reply.messages] == ["Спасибо! Согласие сохранено.", "Кто вы в программе?"]

"""Two replicas (two engines on one database) racing over one person: every update lands, once."""

from __future__ import annotations

import asyncio

from dialogs import model as m
from dialogs.engine import DialogEngine, Registry
from storage.repositories.handling import journal_and_start
from storage.repositories.inbox import journal

WHO = m.ExternalId("telegram", "811", "811")


def notes_registry(gate: asyncio.Event, waiting: asyncio.Event) -> Registry:
    """One screen that appends each text to a list in the dialog state; «медленно» waits for `gate`."""

    async def note(text: str, ctx) -> str:
        if text == "медленно":
            waiting.set()
            await gate.wait()
        ctx.data["notes"] = [*ctx.data.get("notes", []), text]
        return text

    registry = Registry(entry="notes")
    registry.add(m.Flow(name="notes", start="note", screens=[
        m.Screen(id="note", text=lambda ctx: f"Заметок: {len(ctx.data.get('notes', []))}", input=note, go="stay"),
    ]))
    return registry


async def test_an_update_racing_another_replica_over_one_person_is_handled_again_and_both_land(db, clock):
    """PostgreSQL locks nothing while a flow runs: the slow replica's save finds the state changed
    by the fast one, and its update is handled again over the new state. On SQLite the fast
    replica waits for the slow one's transaction."""
    gate, waiting = asyncio.Event(), asyncio.Event()
    registry = notes_registry(gate, waiting)
    slow_replica = DialogEngine(db, registry, clock=clock)
    fast_replica = DialogEngine(db, registry, clock=clock)
    await journal(db.engine, "telegram", [("9101", "{}"), ("9102", "{}")])
    await slow_replica.handle(WHO, m.CommandEvent("__show__"))

    slow = asyncio.create_task(slow_replica.handle(WHO, m.TextEvent("медленно"), update_id="9101"))
    await asyncio.wait_for(waiting.wait(), 10)
    fast = asyncio.create_task(fast_replica.handle(WHO, m.TextEvent("быстро"), update_id="9102"))
    await asyncio.wait({fast}, timeout=0.5)
    fast_finished_first = fast.done()
    gate.set()
    replies = await asyncio.wait_for(asyncio.gather(slow, fast), 20)

    async with db.unit() as uow:
        notes = (await uow.conversations.load(*WHO.key)).data["notes"]
    if db.url.startswith("postgresql"):
        assert fast_finished_first
        assert notes == ["быстро", "медленно"]
        assert [reply.messages[-1].text for reply in replies] == ["Заметок: 2", "Заметок: 1"]
    else:
        assert not fast_finished_first
        assert notes == ["медленно", "быстро"]
        assert [reply.messages[-1].text for reply in replies] == ["Заметок: 1", "Заметок: 2"]


async def test_one_update_given_to_two_replicas_at_once_lands_once(db, clock):
    gate, waiting = asyncio.Event(), asyncio.Event()
    registry = notes_registry(gate, waiting)
    replicas = [DialogEngine(db, registry, clock=clock) for _ in range(2)]
    await journal(db.engine, "telegram", [("9201", "{}")])
    await replicas[0].handle(WHO, m.CommandEvent("__show__"))

    first = asyncio.create_task(replicas[0].handle(WHO, m.TextEvent("медленно"), update_id="9201"))
    await asyncio.wait_for(waiting.wait(), 10)
    second = asyncio.create_task(replicas[1].handle(WHO, m.TextEvent("медленно"), update_id="9201"))
    await asyncio.sleep(0.3)
    gate.set()
    replies = await asyncio.wait_for(asyncio.gather(first, second), 20)

    async with db.unit() as uow:
        assert (await uow.conversations.load(*WHO.key)).data["notes"] == ["медленно"]
    assert sorted(len(reply.messages) for reply in replies) == [0, 1]  # one reply; the duplicate is silent


async def test_a_start_read_with_the_journal_serves_the_update_unless_the_state_changed_since(db, clock):
    """PostgreSQL reads each new update's start (state, version, member id) with the journal
    statement, and handling it needs one statement more. Read too early (another update of the
    person was handled in between), the end finds the state changed and the update runs again."""
    registry = notes_registry(asyncio.Event(), asyncio.Event())
    engine = DialogEngine(db, registry, clock=clock)
    await engine.handle(WHO, m.CommandEvent("__show__"))

    fresh = await journal_and_start(db.engine, "telegram", [("9301", "{}", WHO.user_id), ("9302", "{}", WHO.user_id),
                                                            ("9303", "{}", None)])
    assert sorted(fresh) == ["9301", "9302", "9303"]
    assert await journal_and_start(db.engine, "telegram", [("9301", "{}", WHO.user_id)]) == {}  # a duplicate
    if db.url.startswith("postgresql"):
        start = fresh["9301"]
        assert (start.ours, start.state.flow, start.state.screen, start.version) == (True, "notes", "note", 1)
        assert fresh["9303"] is None
    else:
        assert set(fresh.values()) == {None}  # SQLite reads the start in the unit, after the claim

    first = await engine.handle(WHO, m.TextEvent("раз"), update_id="9301", prefetched=fresh["9301"])
    second = await engine.handle(WHO, m.TextEvent("два"), update_id="9302", prefetched=fresh["9302"])  # stale
    again = await engine.handle(WHO, m.TextEvent("раз"), update_id="9301", prefetched=fresh["9301"])  # replayed

    assert [first.messages[-1].text, second.messages[-1].text, again.messages] == ["Заметок: 1", "Заметок: 2", []]
    async with db.unit() as uow:
        assert (await uow.conversations.load(*WHO.key)).data["notes"] == ["раз", "два"]

"""Property: any sequence of presses, texts, commands, stale buttons and restarts keeps the bot sane.

No exception reaches the user, the stored dialog state always names an existing flow and screen,
and the person can always get back to the main menu (or, unregistered, to the start).
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dialogs.engine import DialogEngine
from dialogs.flows import texts as T
from dialogs.registry import build_registry
from storage.models import Conversation
from tests.support.driver import EngineChat, register_teacher

TEXTS = st.sampled_from([
    "Иванова Мария Петровна", "1999", "2025", "Кудрово", "да", "", "   ", "/", "<b>x</b>", "А" * 5000,
    "\x00\x07", "12345", "Всеволожский район", "Согласен(на)", "😀" * 10, "ABCD-EFGH-JKLM", "Школа",
])
COMMANDS = st.sampled_from(["/start", "/menu", "/profile", "/help", "/cancel", "/mydata", "/unknown", "/start m_novotroitsk"])
ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("press"), st.integers(0, 30)),
        st.tuples(st.just("text"), TEXTS),
        st.tuples(st.just("command"), COMMANDS),
        st.tuples(st.just("stale"), st.integers(0, 10)),
        st.tuples(st.just("restart"), st.none()),
        st.tuples(st.just("photo"), st.none()),
    ),
    min_size=1,
    max_size=30,
)
users = itertools.count(900000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actions=ACTIONS, registered=st.booleans())
async def test_random_use_never_breaks_the_dialog(engine, db, clock, actions, registered):
    registry = engine.registry
    person = EngineChat(engine, next(users))
    seen_tokens: list[str] = []
    if registered:
        await register_teacher(person)

    for kind, value in actions:
        if kind == "press" and person.buttons():
            labels = person.buttons()
            reply = await person.press(labels[value % len(labels)])
        elif kind == "text":
            reply = await person.send(value) if value != "/" else await person.send("/ ")
        elif kind == "command":
            reply = await person.send(value)
        elif kind == "stale" and seen_tokens:
            reply = await person.press_token(seen_tokens[value % len(seen_tokens)])
        elif kind == "restart":
            person.engine = DialogEngine(db, build_registry(), clock=clock)
            reply = await person.send("/start")
        elif kind == "photo":
            reply = await person.send_other("sticker")
        else:
            reply = await person.send("/start")
        seen_tokens.extend(b.token for m in reply.messages for row in m.buttons for b in row)

        assert reply.messages, f"no reply to {kind}"
        assert all(m.text != T.SOMETHING_WRONG for m in reply.messages), f"error after {kind} {value!r}"
        async with db.unit() as uow:
            state = (
                await uow.session.execute(select(Conversation).where(Conversation.external_id == person.who.user_id))
            ).scalar_one()
        assert state.flow in registry.flows and registry.flows[state.flow].has_screen(state.screen)

    if T.CANCEL in person.buttons():
        await person.press(T.CANCEL)
    await person.send("/menu")
    assert person.last_text().startswith(("Главное меню", "Здравствуйте", "Согласие", "Кто вы", "Общая информация"))

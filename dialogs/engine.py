"""The dialog engine: a small interpreter of flows.

It takes a neutral event for one person, loads where that person is (from the database, so
restarts and several processes are safe), applies the event to the current screen, saves the
new position and returns a neutral `Reply`. Buttons carry short opaque tokens that are valid
only for the screen they were issued on: a stale, forged or foreign token changes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from dialogs import model as m
from dialogs.context import Ctx
from dialogs.flows import texts as T
from storage.models import utcnow
from storage.repositories.conversations import DialogState
from storage.repositories.handling import Outcome, Start
from storage.repositories.inbox import Deliveries
from storage.unit_of_work import Database

log = logging.getLogger(__name__)
Reply = m.Reply

NONCE_ALPHABET = string.ascii_lowercase + string.digits
MAX_REDIRECTS = 20
# Handlings of one update when replicas race over one person (see `storage.repositories.handling`):
# a changed state, or a deadlock, a serialization failure or a duplicate key from the other's writes.
ATTEMPTS = 4
_RACE_SQLSTATES = {"40P01", "40001"}


class Conflict(Exception):
    """The person's state kept changing under an update: the person is asked to try again."""


def _race(error: DBAPIError) -> bool:
    """Whether a database error may come from another replica's concurrent writes for the same
    person (handling the update again settles it) rather than from the database being down."""
    return isinstance(error, IntegrityError) or getattr(error.orig, "sqlstate", None) in _RACE_SQLSTATES


@dataclass(frozen=True)
class Command:
    """A slash command: the flow it opens, or a message it shows without moving (`inline`)."""

    name: str
    target: str | None = None
    inline: Callable[[Ctx], Any] | None = None
    description: str = ""
    in_sticky: bool = False


@dataclass
class Registry:
    """Everything the engine interprets: flows by name and commands by name."""

    flows: dict[str, m.Flow] = field(default_factory=dict)
    commands: dict[str, Command] = field(default_factory=dict)
    entry: str = "start"
    consent_flow: str = "consent"
    member_flow: str = "registration"
    consent_check: Callable[[Ctx], Any] | None = None

    def add(self, *flows: m.Flow) -> None:
        for flow in flows:
            if flow.name in self.flows:
                raise ValueError(f"flow {flow.name} registered twice")
            self.flows[flow.name] = flow

    def command(self, command: Command) -> None:
        self.commands[command.name] = command


async def resolve(value: Any, ctx: Ctx) -> Any:
    """Call a callable with the context (awaiting it if needed); return plain values as is."""
    if callable(value):
        value = value(ctx)
        if inspect.isawaitable(value):
            value = await value
    return value


class DialogEngine:
    """Interprets flows for every person and every channel."""

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        config: Any = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.registry = registry
        self.config = config
        self.clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._waiters: dict[tuple[str, str], int] = {}
        # (transport, update id) answered with "try again" while storage was down: see settle_deferred.
        self.deferred: set[tuple[str, str]] = set()
        # Replies sent, to be marked so in the journal (a reply is kept there until then).
        self.deliveries = Deliveries(db.sessions.kw["bind"])

    # ---- entry point ---------------------------------------------------------------------

    async def handle(self, who: m.ExternalId, event: m.Event, *, update_id: str | None = None,
                     prefetched: Start | None = None) -> Reply:
        """Apply one event from one person and return what to show them. `prefetched`: the
        update's start, read when it was journaled (see `storage.repositories.handling`)."""
        key = who.key
        self._waiters[key] = self._waiters.get(key, 0) + 1
        if self._waiters[key] > 1:
            prefetched = None  # an earlier update of theirs is ahead: it will change the state
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._handle_locked(who, event, update_id, prefetched)
        finally:
            self._waiters[key] -= 1
            if self._waiters[key] == 0:
                del self._waiters[key]
                self._locks.pop(key, None)

    async def _handle_locked(self, who: m.ExternalId, event: m.Event, update_id: str | None,
                             prefetched: Start | None) -> Reply:
        try:
            for attempt in range(1, ATTEMPTS + 1):
                start, prefetched = prefetched, None  # run again, it reads the state that changed
                try:
                    reply = await self._attempt(who, event, update_id, start)
                except DBAPIError as error:  # IntegrityError among them
                    if attempt == ATTEMPTS or not _race(error):
                        raise
                    continue
                if reply is not None:
                    return reply
            log.warning("an update from %s:%s conflicted %d times", who.transport, _masked(who.user_id), ATTEMPTS)
            raise Conflict
        except (Conflict, OperationalError, DBAPIError, PoolTimeout, ConnectionError, OSError) as error:
            log.warning("could not store an update (storage unavailable or contended): %s", type(error).__name__)
            if update_id is not None:
                self.deferred.add((who.transport, update_id))
            return Reply(messages=[m.OutMessage(T.TRY_AGAIN)])
        except Exception:
            log.exception("update from %s:%s failed", who.transport, _masked(who.user_id))
            await self._mark_handled_after_failure(who, update_id)
            return Reply(messages=[m.OutMessage(T.SOMETHING_WRONG)])

    async def _attempt(self, who: m.ExternalId, event: m.Event, update_id: str | None,
                       prefetched: Start | None) -> Reply | None:
        """Handle the update once: its reply, or None when another replica changed the person's
        state meanwhile (nothing was stored; run again over the new state)."""
        async with self.db.unit() as uow:
            start = await uow.start_update(who.transport, who.user_id, update_id, prefetched)
            if not start.ours:
                return Reply()
            ctx = Ctx(who=who, data={}, uow=uow, now=self.clock(), config=self.config)
            run = _Run(self, ctx)
            reply = await run.dispatch(start.state, event)
            ctx.touch()
            due = m.encode_reply(who.chat_id, reply) if update_id is not None else None
            outcome = await uow.finish_update(who.transport, who.user_id, update_id, run.state, start, due)
            if outcome is Outcome.CONFLICT:
                return None
            if outcome is Outcome.DUPLICATE:
                return Reply()
            await uow.commit()
            return reply

    def delivered(self, transport: str, update_id: str | None, reply: Reply) -> None:
        """Note that the reply to an update was sent: the journal stops keeping it (in a batch)."""
        if update_id is not None and reply.messages:
            self.deliveries.sent(transport, update_id)

    async def close(self) -> None:
        """Mark the replies sent so far (graceful shutdown): a restart does not send them again."""
        await self.deliveries.flush()

    async def settle_deferred(self) -> int:
        """Mark handled the updates answered with "try again" while storage was down, once it is
        back: the person was asked to repeat, so a replay of the journal must not apply them too."""
        items = list(self.deferred)
        if not items:
            return 0
        async with self.db.unit() as uow:
            for transport, update_id in items:
                await uow.inbox.mark_handled(transport, update_id)
            await uow.commit()
        self.deferred.difference_update(items)
        return len(items)

    async def _mark_handled_after_failure(self, who: m.ExternalId, update_id: str | None) -> None:
        """A bug must not make an update replay forever: mark it handled in its own transaction."""
        if update_id is None:
            return
        try:
            async with self.db.unit() as uow:
                await uow.inbox.mark_handled(who.transport, update_id)
                await uow.commit()
        except Exception:  # the database itself may be what failed
            log.warning("could not mark a failed update handled")

    async def render_current(self, who: m.ExternalId) -> Reply:
        """Show the person's current screen again (used after a restart or a notification)."""
        return await self.handle(who, m.CommandEvent("__show__"))


def _masked(user_id: str) -> str:
    """Ids only in logs, and even those shortened."""
    return user_id[-4:].rjust(len(user_id), "*") if len(user_id) > 4 else "****"


class _Run:
    """The handling of one event: mutates `state`, collects the reply."""

    def __init__(self, engine: DialogEngine, ctx: Ctx) -> None:
        self.engine = engine
        self.registry = engine.registry
        self.ctx = ctx
        self.state = DialogState(flow="", screen="")
        self.notice: str | None = None
        self._choices: dict[tuple[str, str, str | None], Sequence[m.Choice]] = {}
        self.entered = False  # a screen's files go out when it is entered, not on every redraw

    async def choices(self, screen: m.Screen, query: str | None) -> Sequence[m.Choice]:
        """A screen's choices, computed once per event (text search and rendering share them)."""
        key = (self.state.flow, screen.id, query)
        if key not in self._choices:
            self._choices[key] = await screen.choices(self.ctx, query)
        return self._choices[key]

    # ---- dispatch ------------------------------------------------------------------------

    async def dispatch(self, state: DialogState | None, event: m.Event) -> Reply:
        if state is None or state.flow not in self.registry.flows or not self.registry.flows[
            state.flow
        ].has_screen(state.screen):
            self.state = DialogState(flow="", screen="", data=dict(state.data) if state else {})
            self.ctx.data = self.state.data
            if isinstance(event, m.CommandEvent) and (event.name in self.registry.commands or event.name == "__go__"):
                return await self.on_command(event)
            await self.go(f"flow:{self.registry.entry}")
            return await self.reply()
        self.state = state
        self.ctx.data = state.data
        self.ctx.query = state.view.get("query")
        if isinstance(event, m.CommandEvent):
            return await self.on_command(event)
        if isinstance(event, m.PressEvent):
            return await self.on_press(event.token)
        if isinstance(event, m.TextEvent):
            return await self.on_text(event.text)
        self.ctx.say(T.ONLY_TEXT)
        return await self.reply()

    @property
    def flow(self) -> m.Flow:
        return self.registry.flows[self.state.flow]

    @property
    def screen(self) -> m.Screen:
        return self.flow.screen(self.state.screen)

    # ---- commands ------------------------------------------------------------------------

    async def on_command(self, event: m.CommandEvent) -> Reply:
        if event.name == "__show__":
            return await self.reply()
        command = self.registry.commands.get(event.name)
        if event.name == "__go__" and event.args in self.registry.flows:
            # A button on a scheduled message (a reminder, an invitation) opens a flow.
            command = Command("__go__", f"flow:{event.args}")
            event = m.CommandEvent("__go__")
        if command is None:
            self.ctx.say(T.UNKNOWN_COMMAND)
            if self.state.flow:
                return await self.reply()
            await self.go(f"flow:{self.registry.entry}")
            return await self.reply()
        if event.args:
            self.state.data["_start_args"] = event.args[:64]
        if command.inline is not None:
            text = await resolve(command.inline, self.ctx)
            self.ctx.say(text)
            if self.state.flow:
                return await self.reply()
            await self.go(f"flow:{self.registry.entry}")
            return await self.reply()
        if self.state.flow and self.flow.sticky and not command.in_sticky:
            if command.target == f"flow:{self.state.flow}" or command.name == "start":
                self.ctx.say(T.RESUME)
            else:
                self.ctx.say(T.FINISH_FIRST.format(title=_flow_title(self.flow), command=f"/{command.name}"))
            return await self.reply()
        await self.go(command.target or f"flow:{self.registry.entry}")
        return await self.reply()

    # ---- presses -------------------------------------------------------------------------

    async def on_press(self, token: str) -> Reply:
        nonce, _, index = token.partition(".")
        items = self.state.view.get("items", [])
        if nonce != self.state.nonce or not index.isdigit() or int(index) >= len(items):
            self.notice = "Кнопка устарела"
            self.ctx.say(T.STALE_BUTTON)
            return await self.reply()
        return await self.apply_item(items[int(index)])

    async def apply_item(self, item: list) -> Reply:
        _label, kind, value = item
        screen = self.screen
        if kind == "b":
            button = next((b for b in screen.buttons if b.id == value), None)
            if button is None:
                return await self.reply()
            if button.save:
                self.state.data.update(button.save)
            target = button.go
            if button.action is not None:
                override = await button.action(self.ctx)
                target = override if override is not None else target
            await self.go(target)
            return await self.reply()
        if kind == "c":
            if screen.multi:
                self.toggle(screen, value)
                return await self.reply()
            if screen.save_as:
                self.state.data[screen.save_as] = value
            await self.go(screen.go)
            return await self.reply()
        if kind == "done":
            if not self.state.data.get(screen.save_as or "", []):
                self.ctx.say(T.PICK_AT_LEAST_ONE)
                return await self.reply()
            await self.go(screen.go)
            return await self.reply()
        if kind == "page":
            self.state.view["page"] = int(value)
            return await self.reply()
        if kind == "back":
            await self.back()
            return await self.reply()
        if kind == "cancel":
            await self.go(self.flow.on_cancel, push=False)
            return await self.reply()
        return await self.reply()

    def toggle(self, screen: m.Screen, value: str) -> None:
        key = screen.save_as or screen.id
        chosen: list[str] = list(self.state.data.get(key, []))
        exclusive = set(screen.exclusive)
        if value in chosen:
            chosen.remove(value)
        elif value in exclusive:
            chosen = [value]
        else:
            chosen = [c for c in chosen if c not in exclusive] + [value]
        self.state.data[key] = chosen

    async def back(self) -> None:
        if self.state.stack:
            self.state.screen = self.state.stack.pop()
            self.state.view = {}
            self.entered = True
        else:
            await self.go(self.flow.on_cancel, push=False)

    # ---- text ----------------------------------------------------------------------------

    async def on_text(self, text: str) -> Reply:
        screen = self.screen
        stripped = text.strip()
        folded = stripped.casefold()
        for item in self.state.view.get("items", []):
            if folded and item[0].casefold() == folded:
                return await self.apply_item(item)
        if not stripped:
            self.ctx.say(T.EMPTY_MESSAGE)
            return await self.reply()
        if screen.input is not None:
            if len(stripped) > screen.max_length:
                self.ctx.say(T.TOO_LONG.format(length=len(stripped), limit=screen.max_length))
                return await self.reply()
            try:
                value = screen.input(stripped, self.ctx)
                if inspect.isawaitable(value):
                    value = await value
            except m.InputError as error:
                self.ctx.say(str(error))
                return await self.reply()
            if screen.save_as:
                self.state.data[screen.save_as] = value
            await self.go(screen.go)
            return await self.reply()
        if screen.searchable and screen.choices is not None:
            query = stripped[:100]
            found = await self.choices(screen, query)
            if not found:
                self.ctx.say(T.NOTHING_FOUND.format(query=_quote(query)))
                return await self.reply()
            self.state.view["query"] = query
            self.state.view["page"] = 0
            self.ctx.query = query
            return await self.reply()
        self.ctx.say(T.USE_BUTTONS)
        return await self.reply()

    # ---- moving --------------------------------------------------------------------------

    async def go(self, target: m.Target, *, push: bool = True) -> None:
        """Move to a screen of this flow or to another flow, running `on_enter` hooks."""
        for _ in range(MAX_REDIRECTS):
            target = await resolve(target, self.ctx)
            if target is None or target == "stay":
                return
            if target == "back":
                await self.back()
                return
            if isinstance(target, str) and target.startswith("flow:"):
                target = await self.enter_flow(target.removeprefix("flow:"))
            else:
                if push and self.state.screen and self.state.screen != target:
                    self.state.stack.append(self.state.screen)
                self.state.screen = target
            self.state.view = {}
            self.ctx.query = None
            self.entered = True
            screen = self.screen
            if screen.on_enter is None:
                return
            target = await screen.on_enter(self.ctx)
            push = True
            if target is None:
                return
        raise RuntimeError("too many redirects between screens")

    async def enter_flow(self, name: str) -> str | None:
        """Switch to a flow, checking consent, registration and role first."""
        flow = self.registry.flows[name]
        if flow.requires in ("consent", "member") and name != self.registry.consent_flow:
            if self.registry.consent_check is not None and not await self.registry.consent_check(self.ctx):
                self.state.data["_after_consent"] = name
                flow = self.registry.flows[self.registry.consent_flow]
        if flow.name == name and flow.requires == "member":
            member = await self.ctx.member()
            if member is None:
                flow = self.registry.flows[self.registry.member_flow]
            elif flow.roles is not None and member.role not in flow.roles:
                self.ctx.say(T.NO_RIGHTS)
                flow = self.registry.flows[self.registry.entry]
        keep = {key: value for key, value in self.state.data.items() if key.startswith("_")}
        self.state.data.clear()
        self.state.data.update(keep)
        self.state.flow = flow.name
        self.state.screen = flow.start
        self.state.stack = []
        return None

    # ---- rendering -----------------------------------------------------------------------

    async def reply(self) -> Reply:
        message = await self.render()
        return Reply(messages=[*self.ctx.said, message], notice=self.notice)

    async def render(self) -> m.OutMessage:
        screen = self.screen
        text = str(await resolve(screen.text, self.ctx))
        items: list[list] = []
        rows: list[list[int]] = []

        def add(label: str, kind: str, value: Any, row: list[int] | None = None) -> None:
            items.append([label, kind, value])
            if row is None:
                rows.append([len(items) - 1])
            else:
                row.append(len(items) - 1)

        if screen.choices is not None:
            choices = list(await self.choices(screen, self.state.view.get("query")))
            pages = max(1, -(-len(choices) // screen.per_page))
            page = min(int(self.state.view.get("page", 0)), pages - 1)
            chosen = set(self.state.data.get(screen.save_as or screen.id, [])) if screen.multi else set()
            for choice in choices[page * screen.per_page : (page + 1) * screen.per_page]:
                label = choice.label
                if screen.multi:
                    label = f"{T.TICK_ON if choice.id in chosen else T.TICK_OFF} {label}"
                add(label, "c", choice.id)
            if pages > 1:
                text += "\n\n" + T.PAGE.format(page=page + 1, pages=pages)
                nav: list[int] = []
                rows.append(nav)
                if page > 0:
                    add(T.PREV_PAGE, "page", page - 1, nav)
                if page < pages - 1:
                    add(T.NEXT_PAGE, "page", page + 1, nav)
            if screen.searchable and pages > 1 and not self.state.view.get("query"):
                text += "\n" + T.SEARCH_HINT
            if screen.multi:
                add(T.DONE, "done", "")
        for button in screen.buttons:
            if button.show_if is None or button.show_if(self.ctx):
                add(button.label, "b", button.id)
        nav = []
        if screen.back and self.state.stack:
            add(T.BACK, "back", "", nav)
        if screen.cancel:
            add(T.CANCEL, "cancel", "", nav)
        if nav:
            rows.append(nav)
        rows = [row for row in rows if row]
        nonce = new_nonce()
        self.state.nonce = nonce
        self.state.view = {
            "items": items,
            "page": self.state.view.get("page", 0),
            "query": self.state.view.get("query"),
        }
        buttons = [[m.OutButton(items[i][0], f"{nonce}.{i}") for i in row] for row in rows]
        files = await screen.files(self.ctx) if screen.files is not None and self.entered else []
        return m.OutMessage(text=text, buttons=buttons, files=files)


def new_nonce(length: int = 6) -> str:
    """A random screen nonce from `NONCE_ALPHABET`, from one draw of the system's randomness
    (`secrets.choice` per character drew it once per character)."""
    value = secrets.randbelow(len(NONCE_ALPHABET) ** length)
    characters = []
    for _ in range(length):
        value, digit = divmod(value, len(NONCE_ALPHABET))
        characters.append(NONCE_ALPHABET[digit])
    return "".join(characters)


def _quote(text: str, limit: int = 40) -> str:
    """A user's text quoted back: shortened, one line, no control characters."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return clean[:limit] + ("…" if len(clean) > limit else "")


def _flow_title(flow: m.Flow) -> str:
    return flow.title or flow.name


def check_flow(flow: m.Flow, known_flows: Sequence[str]) -> list[str]:
    """Static check of a flow: every `go` names an existing screen or flow (callables are skipped)."""
    problems: list[str] = []
    ids = {screen.id for screen in flow.screens}

    def target_ok(target: Any) -> bool:
        if target is None or callable(target) or target in ("stay", "back"):
            return True
        if isinstance(target, str) and target.startswith("flow:"):
            return target.removeprefix("flow:") in known_flows
        return target in ids

    if flow.start not in ids:
        problems.append(f"{flow.name}: start screen {flow.start} missing")
    if not target_ok(flow.on_cancel):
        problems.append(f"{flow.name}: on_cancel {flow.on_cancel} unknown")
    for screen in flow.screens:
        if not target_ok(screen.go):
            problems.append(f"{flow.name}.{screen.id}: go {screen.go} unknown")
        for button in screen.buttons:
            if not target_ok(button.go):
                problems.append(f"{flow.name}.{screen.id}.{button.id}: go {button.go} unknown")
        button_ids = [button.id for button in screen.buttons]
        if len(button_ids) != len(set(button_ids)):
            problems.append(f"{flow.name}.{screen.id}: duplicate button ids")
    return problems

"""The VK community channel: Bots Long Poll in a worker thread, events to the engine, replies drawn back.

vk-api is synchronous, so `VkBotLongPoll.check()` runs in a loop in its own thread and hands
raw events to the event loop; everything else (the journal, the engine, sending) runs there,
with each vk-api call in a worker thread. `check()` itself handles the long poll's `failed`
answers (1: take the new `ts`; 2: new key, same `ts`; 3: new key and `ts`); network errors,
which vk-api lets escape (vk-api issues 197, 243, 302, 368, 534), restart the loop after a
growing pause without losing `ts`.

The events of each poll are journaled in the inbox under VK's `event_id` (one transaction per
poll) before the next poll moves `ts` past them, and the engine marks each handled in the same
transaction as its effects: a redelivered event is skipped, one interrupted by a crash or a
shutdown is replayed at the next start (and, while running, one journaled over a minute ago
and never handled: a dead process's). The `ts` reached is saved in the same transaction as the
journal (`channel_cursors`), and the next start polls from it: events sent while the bot was
down are fetched then, as long as VK still keeps them (otherwise VK answers `failed: 1` and
polling goes on from its new `ts`). Events of one person are handled in the order they came;
different people are handled concurrently. The reply to an event is kept with it until it is
sent: at start, the replies of events handled just before a crash are sent, under the `random_id`
of the first try, so VK keeps a part that did go out once; a reply VK failed to take (network,
server errors) is sent the same way by the replay round once VK answers again.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from vk_api.bot_longpoll import VkBotLongPoll

from bot.metrics import DUPLICATES, REPLY_SECONDS, UPDATES
from dialogs.engine import DialogEngine
from dialogs.model import CommandEvent, Event, ExternalId, OtherEvent, PressEvent, Reply, TextEvent
from handlers.kept_replies import resend_kept
from handlers.vk.api_session import make_vk_api
from handlers.vk.client import VkClient
from handlers.vk.render import ClientCaps, send_reply, snackbar_text
from storage.models import utcnow
from storage.repositories.inbox import ORPHAN_AGE, REPLAY_EVERY
from storage.services import linking as linking_service
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

TRANSPORT = "vk"
CHAT_PEER_START = 2_000_000_000  # peer ids of group chats; the bot talks in private dialogs only
MAX_REMEMBERED_CLIENTS = 10_000
MAX_RECENT_EVENTS = 10_000


@dataclass(frozen=True)
class RawEvent:
    """A long-poll event left as VK sent it."""

    raw: Any


class RawLongPoll(VkBotLongPoll):
    """`VkBotLongPoll` without vk-api's event classes: the adapter reads raw events itself, and
    one malformed event cannot make `check()` raise and lose the whole batch."""

    def _parse_event(self, raw_event: Any) -> RawEvent:
        return RawEvent(raw_event)


@dataclass(frozen=True)
class Incoming:
    """One VK event as the engine sees it, plus what the adapter needs to answer it."""

    update_id: str
    who: ExternalId
    event: Event
    callback_id: str | None = None
    caps: ClientCaps | None = None


def _payload(raw: Any) -> dict[str, Any] | None:
    """A button payload: a JSON string in message_new, an object in message_event."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def press_event(token: Any) -> Event:
    """A press: an engine token, or `go:<flow>` from a button of a scheduled message (as in Telegram)."""
    token = token if isinstance(token, str) else ""
    if token.startswith("go:"):
        return CommandEvent("__go__", token[3:])
    return PressEvent(token)


def text_event(text: str) -> Event:
    """A typed text: a slash command or plain text."""
    stripped = text.strip()
    if stripped.startswith("/"):
        head, _, args = stripped[1:].partition(" ")
        name = head.split("@", 1)[0].lower()
        if name:
            return CommandEvent(name, args.strip())
    return TextEvent(text)


def incoming_of(raw: dict[str, Any]) -> Incoming | None:
    """Translate a raw Bots Long Poll event; None for events the bot does not handle."""
    kind = raw.get("type")
    obj = raw.get("object")
    if not isinstance(obj, dict):
        return None
    if kind == "message_new":
        message = obj.get("message", obj)  # API < 5.103 sent the message itself
        from_id, peer_id = message.get("from_id"), message.get("peer_id", message.get("from_id"))
        if not isinstance(from_id, int) or not isinstance(peer_id, int) or from_id <= 0:
            return None
        if peer_id >= CHAT_PEER_START:
            return None
        text = message.get("text") or ""
        payload = _payload(message.get("payload"))
        if payload is not None and "t" in payload:  # a text button (clients without callback buttons)
            event = press_event(payload["t"])
        elif payload is not None and payload.get("command") == "start":  # VK's «Начать» button
            event = CommandEvent("start")
        elif text.strip():
            event = text_event(text)
        elif message.get("attachments"):
            first = message["attachments"][0]
            event = OtherEvent(str(first.get("type", "attachment")) if isinstance(first, dict) else "attachment")
        else:
            event = TextEvent("")
        update_id = raw.get("event_id") or f"m{peer_id}_{message.get('conversation_message_id')}"
        caps = ClientCaps.from_client_info(obj.get("client_info")) if "client_info" in obj else None
        return Incoming(str(update_id), ExternalId(TRANSPORT, str(from_id), str(peer_id)), event, caps=caps)
    if kind == "message_event":
        user_id, peer_id, callback_id = obj.get("user_id"), obj.get("peer_id"), obj.get("event_id")
        if not isinstance(user_id, int) or not isinstance(peer_id, int) or peer_id >= CHAT_PEER_START:
            return None
        payload = _payload(obj.get("payload")) or {}
        update_id = raw.get("event_id") or f"e{callback_id}"
        return Incoming(
            str(update_id), ExternalId(TRANSPORT, str(user_id), str(peer_id)), press_event(payload.get("t")),
            callback_id=str(callback_id) if callback_id else None,
        )
    return None


class VkAdapter:
    """Runs the VK community bot: `await start()`, later `await stop()`."""

    transport = TRANSPORT

    def __init__(
        self,
        client: VkClient,
        engine: DialogEngine,
        db: Database,
        *,
        wait: float = 10,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        answer_within: float = 2.0,
        send_attempts: int = 3,
        send_backoff: float = 0.5,
        longpoll_factory: Callable[[], Any] | None = None,
        owns_client: bool = False,
        replay_every: float = REPLAY_EVERY,
        orphan_age: timedelta = ORPHAN_AGE,
    ) -> None:
        if client.group_id is None:
            raise ValueError("the VK adapter needs the community's group id")
        self.client = client
        self.engine = engine
        self.db = db
        self.wait = wait
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.answer_within = answer_within
        self.send_attempts = send_attempts
        self.send_backoff = send_backoff
        self._longpoll_factory = longpoll_factory or self._default_longpoll
        self._owns_client = owns_client
        self.replay_every = replay_every
        self.orphan_age = orphan_age
        self._replayer: asyncio.Task | None = None
        self._cursor = f"{TRANSPORT}:{client.group_id}"
        self._resume_ts: str | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tails: dict[str, asyncio.Task] = {}
        self._caps: collections.OrderedDict[str, ClientCaps] = collections.OrderedDict()
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._changed = asyncio.Event()
        #: events fully handled (reply sent or given up), for tests and monitoring
        self.processed = 0
        #: consecutive long-poll failures (network, API) since the last good answer
        self.poll_failures = 0

    # ---- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Replay updates left unhandled by a crash, then start polling in a worker thread."""
        if self._thread is not None:
            raise RuntimeError("the VK adapter is already running")
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._resume_ts = await self._saved_ts()
        await self._replay_pending()
        self._thread = threading.Thread(target=self._poll_forever, name="vk-longpoll", daemon=True)
        self._thread.start()
        self._replayer = self._loop.create_task(self._keep_replaying(), name="vk journal replay")
        log.info("vk: long poll started for group %s", self.client.group_id)

    async def stop(self, timeout: float = 15.0) -> None:
        """Stop polling and let events in hand finish, each step waiting up to `timeout` s.

        A poll in flight ends within `wait` s; what it brings is journaled (and handled at the
        next start), not handled now.
        """
        self._stopping.set()
        replayer, self._replayer = self._replayer, None
        if replayer is not None:
            replayer.cancel()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                log.warning("vk: the long-poll thread did not end in %.0f s", timeout)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._owns_client:
            self.client.close()
        log.info("vk: stopped")

    @property
    def running(self) -> bool:
        """Whether the long poll is on: its thread is alive and has not been told to stop."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    async def wait_processed(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` events in all have been taken care of (tests use it instead of sleeping)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.processed < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"vk: {self.processed} of {count} events handled after {timeout} s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # ---- the polling thread ----------------------------------------------------------------

    def _default_longpoll(self) -> RawLongPoll:
        return RawLongPoll(self.client.vk, self.client.group_id, wait=self.wait)

    def _poll_forever(self) -> None:
        longpoll = None
        while not self._stopping.is_set():
            try:
                if longpoll is None:
                    longpoll = self._longpoll_factory()  # groups.getLongPollServer
                    if self._resume_ts is not None and hasattr(longpoll, "ts"):
                        longpoll.ts = self._resume_ts  # go on from where the last run got to
                    self._resume_ts = None
                events = longpoll.check()
            except Exception as error:  # network, timeouts, API errors, a garbled answer
                if self._stopping.is_set():
                    break
                self.poll_failures += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (self.poll_failures - 1))
                delay *= 0.75 + 0.5 * random.random()
                log.warning("vk: long poll failed (%s); retrying in %.1f s", type(error).__name__, delay)
                self._stopping.wait(delay)
                continue
            self.poll_failures = 0
            raws = [event.raw for event in events if isinstance(event.raw, dict)]
            ts = getattr(longpoll, "ts", None)
            if raws and not self._hand_over(raws, None if ts is None else str(ts)):
                break

    def _hand_over(self, raws: list[dict[str, Any]], ts: str | None = None) -> bool:
        """Journal a batch (and the `ts` after it) on the event loop and wait for it: the next poll
        moves `ts` past it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            accepted = asyncio.run_coroutine_threadsafe(self._accept(raws, ts), loop)
        except RuntimeError:  # the loop is gone (the process is ending)
            log.warning("vk: %d event(s) not journaled: the event loop is closed", len(raws))
            return False
        try:
            accepted.result()
        except Exception:  # a bug in accepting must not stop the polling
            log.exception("vk: accepting %d event(s) failed", len(raws))
        return True

    # ---- the event loop side -----------------------------------------------------------------

    async def _saved_ts(self) -> str | None:
        try:
            async with self.db.unit() as uow:
                return await uow.inbox.cursor(self._cursor)
        except Exception as error:  # the database is down: poll from "now", as VK offers
            log.warning("vk: could not read the saved long-poll position: %s", type(error).__name__)
            return None

    async def _accept(self, raws: list[dict[str, Any]], ts: str | None = None) -> None:
        """Journal a batch of events and the `ts` after it in one transaction, then queue the new
        events for handling."""
        batch: list[tuple[Incoming, dict[str, Any]]] = []
        for raw in raws:
            if raw.get("type") in ("message_allow", "message_deny"):
                await self._permission(raw)
                continue
            try:
                incoming = incoming_of(raw)
            except Exception:
                log.warning("vk: a malformed %s event was ignored", raw.get("type"))
                continue
            if incoming is not None:
                batch.append((incoming, raw))
        if not batch:
            return
        seen_before: set[str] = set()
        try:
            async with self.db.unit() as uow:
                for incoming, raw in batch:
                    payload = json.dumps(raw, ensure_ascii=False)
                    if not await uow.inbox.record(TRANSPORT, incoming.update_id, payload):
                        if await uow.inbox.is_handled(TRANSPORT, incoming.update_id):
                            seen_before.add(incoming.update_id)
                if ts is not None:
                    await uow.inbox.save_cursor(self._cursor, ts)
                await uow.commit()
        except Exception as error:  # the engine tells the person the database is unavailable
            log.warning("vk: could not journal %d event(s): %s", len(batch), type(error).__name__)
        for incoming, _raw in batch:
            if self._stopping.is_set():
                return  # journaled: the next start replays them
            if incoming.update_id in seen_before or incoming.update_id in self._recent:
                log.info("vk: duplicate event %s skipped", incoming.update_id)
                DUPLICATES.labels(transport=TRANSPORT).inc()
                self._count_processed()
                continue
            self._dispatch(incoming)

    async def _permission(self, raw: dict[str, Any]) -> None:
        """A person allowed or forbade the community's messages: mailings follow that."""
        obj = raw.get("object")
        user_id = obj.get("user_id") if isinstance(obj, dict) else None
        if not isinstance(user_id, int):
            return
        who = ExternalId(TRANSPORT, str(user_id), str(user_id))
        try:
            async with self.db.unit() as uow:
                await linking_service.set_channel_allowed(
                    uow, who, allowed=raw["type"] == "message_allow", now=utcnow()
                )
                await uow.commit()
        except Exception as error:
            log.warning("vk: could not record a messages permission: %s", type(error).__name__)
        self._count_processed()

    def _dispatch(self, incoming: Incoming) -> None:
        """Queue an event behind the previous one of the same person."""
        self._remember(incoming.update_id)
        key = incoming.who.user_id
        previous = self._tails.get(key)
        task = asyncio.get_running_loop().create_task(self._run_after(previous, incoming))
        self._tails[key] = task
        self._tasks.add(task)

        def finished(done: asyncio.Task) -> None:
            self._tasks.discard(done)
            if self._tails.get(key) is done:
                del self._tails[key]
            self._count_processed()

        task.add_done_callback(finished)

    def _count_processed(self) -> None:
        self.processed += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _remember(self, update_id: str) -> None:
        """Event ids dispatched lately: a redelivery while the first copy is in hand is skipped."""
        self._recent[update_id] = None
        while len(self._recent) > MAX_RECENT_EVENTS:
            self._recent.popitem(last=False)

    async def _run_after(self, previous: asyncio.Task | None, incoming: Incoming) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            await self._handle(incoming)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("vk: handling event %s failed", incoming.update_id)

    async def _handle(self, incoming: Incoming) -> None:
        started = time.perf_counter()
        try:
            await self._handle_timed(incoming)
        finally:
            REPLY_SECONDS.labels(transport=TRANSPORT).observe(time.perf_counter() - started)
            UPDATES.labels(transport=TRANSPORT).inc()

    async def _handle_timed(self, incoming: Incoming) -> None:
        user = incoming.who.user_id
        if incoming.caps is not None:
            self._remember_caps(user, incoming.caps)
        handling = asyncio.ensure_future(
            self.engine.handle(incoming.who, incoming.event, update_id=incoming.update_id)
        )
        if incoming.callback_id is not None:
            # Answer at once (the button spins until then), with the notice if the engine is quick.
            done, _ = await asyncio.wait({handling}, timeout=self.answer_within)
            notice = handling.result().notice if done and handling.exception() is None else None
            await self._answer(incoming, notice)
        reply: Reply = await handling
        sent = await send_reply(
            self.client,
            incoming.who.chat_id,
            reply,
            key=f"u:{incoming.update_id}",
            caps=self._caps.get(user, ClientCaps()),
            attempts=self.send_attempts,
            backoff=self.send_backoff,
        )
        if sent.settled:  # otherwise VK failed: the kept reply goes out with a later replay round
            self.engine.delivered(TRANSPORT, incoming.update_id, reply)

    async def _answer(self, incoming: Incoming, notice: str | None) -> None:
        try:
            await self.client.answer_event(
                incoming.callback_id, int(incoming.who.user_id), int(incoming.who.chat_id), snackbar_text(notice)
            )
        except Exception as error:  # too late or a replay: the reply itself still goes out
            log.info("vk: event answer failed: %s", type(error).__name__)

    def _remember_caps(self, user: str, caps: ClientCaps) -> None:
        self._caps[user] = caps
        self._caps.move_to_end(user)
        while len(self._caps) > MAX_REMEMBERED_CLIENTS:
            self._caps.popitem(last=False)

    async def _keep_replaying(self) -> None:
        """While running, now and then: settle the events the engine answered with "try again"
        (storage was down), then queue events journaled long ago and never handled."""
        while not self._stopping.is_set():
            await asyncio.sleep(self.replay_every)
            try:
                await self.engine.settle_deferred()
            except Exception as error:  # the database may still be down: next time
                log.warning("vk: could not settle deferred events: %s", type(error).__name__)
                continue
            await self._replay_pending(self.orphan_age)

    async def _resend_due(self, before: datetime | None) -> None:
        """Send the replies of handled events not known to be sent (`handlers.kept_replies`),
        oldest first. Each part goes with the `random_id` of the first try, so VK stores a part
        that did go out once; a reply still being sent by its handler may go again harmlessly."""

        async def send(update_id: str, chat_id: str, reply: Reply) -> bool:
            result = await send_reply(self.client, chat_id, reply, key=f"u:{update_id}",
                                      caps=self._caps.get(str(chat_id), ClientCaps()),
                                      attempts=self.send_attempts, backoff=self.send_backoff)
            return result.settled  # unsettled: VK is still failing, the rest wait for the next round

        try:
            await resend_kept(self.db, self.engine.deliveries, TRANSPORT, send, received_before=before)
        except Exception as error:
            log.warning("vk: could not read the kept replies: %s", type(error).__name__)

    async def _replay_pending(self, older_than: timedelta | None = None) -> None:
        """Send the replies kept unsent, then queue events journaled but never handled (the
        process ended in between); with `older_than`, only those received at least that long
        ago and not in hand here."""
        before = utcnow() - older_than if older_than is not None else None
        await self._resend_due(before)
        try:
            async with self.db.unit() as uow:
                pending = await uow.inbox.pending(TRANSPORT, received_before=before)
        except Exception as error:
            log.warning("vk: could not read the inbox: %s", type(error).__name__)
            return
        if older_than is not None:  # while running: not what this process has in hand
            pending = [(update_id, payload) for update_id, payload in pending if update_id not in self._recent]
        for update_id, payload in pending:
            try:
                incoming = incoming_of(json.loads(payload or ""))
            except (ValueError, AttributeError, TypeError):
                incoming = None
            if incoming is None:
                log.warning("vk: journaled event %s is unreadable, skipped", update_id)
                continue
            self._dispatch(incoming)
        if pending:
            log.info("vk: replaying %d unhandled event(s)", len(pending))


def build_vk_adapter(settings, engine: DialogEngine, db: Database) -> VkAdapter:
    """The VK adapter from settings (`VK__TOKEN`, `VK__GROUP_ID`, `VK__API_BASE_URL`, `VK__REQUESTS_PER_SECOND`)."""
    vk_settings = getattr(settings, "vk", settings)
    if vk_settings.token is None or not vk_settings.group_id:
        raise ValueError("the VK channel needs VK__TOKEN and VK__GROUP_ID")
    vk = make_vk_api(
        vk_settings.token.get_secret_value(),
        vk_settings.api_base_url,
        requests_per_second=vk_settings.requests_per_second,
    )
    return VkAdapter(VkClient(vk, vk_settings.group_id), engine, db, owns_client=True)

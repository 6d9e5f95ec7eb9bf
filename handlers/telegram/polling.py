"""Long polling that loses nothing: updates are journaled before they are acknowledged.

aiogram's own polling confirms an update (by asking for the next offset) while its handler may
still be running, so a crash would lose it. Here every batch is first written to the inbox
table, then acknowledged, then handled; at start the journal's unhandled rows are replayed.
A reply is kept in the journal until it is sent: at start, the replies of updates handled just
before a crash (or while Telegram failed) are sent first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    ClientDecodeError, TelegramBadRequest, TelegramEntityTooLarge, TelegramForbiddenError, TelegramNetworkError,
    TelegramNotFound, TelegramRetryAfter, TelegramServerError,
)
from aiogram.methods import GetUpdates
from aiogram.types import Update
from pydantic import ValidationError

from bot.metrics import DUPLICATES
from dialogs.model import Reply
from handlers.kept_replies import resend_kept
from handlers.telegram.render import send_reply
from handlers.telegram.router import sender_of
from handlers.telegram.session import call_json
from storage.models import utcnow
from storage.repositories.handling import Start, journal_and_start
from storage.repositories.inbox import ORPHAN_AGE, REPLAY_EVERY
from storage.unit_of_work import Database

log = logging.getLogger(__name__)
TRANSPORT = "telegram"
ALLOWED = ["message", "callback_query"]
# A kept reply Telegram refuses for good (the person blocked the bot, the chat is gone): dropped.
UNDELIVERABLE = (TelegramForbiddenError, TelegramBadRequest, TelegramNotFound, TelegramEntityTooLarge)
# A reply another replica stored this recently may still be on its way: not sent again at a start.
SETTLE = timedelta(seconds=2)


# Updates handled at once, by database. Handling is mostly database work; a few updates in flight
# overlap each other's network calls, and bigger getUpdates batches share one journal statement and
# one getUpdates call, but each update waits longer. Measured with bench.load (50 users; ratio to
# the echo bot; handling p99 of registration + questionnaire, whose steps cost 5–7 ms of CPU):
#   SQLite      8 → 0.45–0.50, 36–43 ms; 12 → 0.49–0.59, 56–73 ms; 16 → 0.56, 62 ms
#   PostgreSQL  8 → 0.52–0.58, 54–55 ms; 12 → 0.56–0.59, 75–83 ms (one statement per update)
# PostgreSQL's registration p99 decides there (target < 100 ms); its pool holds more connections
# than updates in flight (storage.db), or overflow connections are opened and closed all along.
CONCURRENCY = {"sqlite": 12, "postgresql": 8}
DEFAULT_CONCURRENCY = 8


def concurrency_for(db: Database) -> int:
    """How many updates to handle at once on this database."""
    return CONCURRENCY.get(db.sessions.kw["bind"].dialect.name, DEFAULT_CONCURRENCY)


def update_id_of(raw: object) -> int:
    """The update id of an update as Telegram sent it (-1 when it has none)."""
    update_id = raw.get("update_id") if isinstance(raw, dict) else None
    return update_id if isinstance(update_id, int) else -1


class Intake:
    """Journal incoming updates, then handle them as tasks (concurrently across users, in order
    per user: the engine serialises each person's updates)."""

    def __init__(self, bot: Bot, dispatcher: Dispatcher, db: Database, *, concurrency: int | None = None) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.db = db
        self.concurrency = concurrency = concurrency if concurrency is not None else concurrency_for(db)
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task] = set()
        self._in_flight: set[str] = set()  # update ids being handled by this process
        self._stopping = asyncio.Event()
        self.handled = 0

    async def replay_pending(self, older_than: timedelta | None = None) -> int:
        """Send the replies kept unsent, then handle what was journaled but not handled before
        the last stop (or crash); with `older_than`, only updates received at least that long
        ago (orphans of a dead replica, or replies Telegram failed to take)."""
        before = utcnow() - older_than if older_than is not None else None
        if older_than is None:  # a start
            await self._let_live_replicas_send()
            await self.resend_due(handled_before=utcnow() - SETTLE)
        else:
            await self.resend_due(before)
        async with self.db.unit() as uow:
            pending = await uow.inbox.pending(TRANSPORT, received_before=before)
        replayed = 0
        for update_id, payload in pending:
            if payload and update_id not in self._in_flight:
                await self._spawn(Update.model_validate_json(payload))
                replayed += 1
        if replayed:
            log.info("replaying %d journaled updates", replayed)
        return replayed

    async def _let_live_replicas_send(self) -> None:
        """At a start, a reply kept moments ago may be another replica's (webhook mode), about to
        be sent and marked: wait until the youngest is `SETTLE` old (a dead process's replies are
        older by then) and send only those older than that. A single process waits only when it
        was killed just now."""
        async with self.db.unit() as uow:
            last = await uow.inbox.last_kept_at(TRANSPORT)
        wait = (last + SETTLE - utcnow()).total_seconds() if last is not None else 0
        if wait > 0:
            await self._sleep(min(wait, SETTLE.total_seconds()))

    async def resend_due(self, received_before: datetime | None = None, *,
                         handled_before: datetime | None = None) -> int:
        """Send the replies of handled updates not known to be sent (`handlers.kept_replies`),
        except those this process has in hand; stops at the first failure Telegram may recover from."""
        engine = self.dispatcher.get("engine")
        if engine is None:
            return 0

        async def send(_update_id: str, chat_id: str, reply: Reply) -> bool:
            try:
                await send_reply(self.bot, chat_id, reply)
            except UNDELIVERABLE as error:
                log.warning("a kept reply cannot be delivered (%s); dropped", type(error).__name__)
            except Exception as error:  # Telegram is down or slow: the rest wait for the next round
                log.warning("could not send kept replies (%s); trying again later", type(error).__name__)
                return False
            return True

        return await resend_kept(self.db, engine.deliveries, TRANSPORT, send, received_before=received_before,
                                 handled_before=handled_before, skip=self._in_flight)

    async def keep_replaying(self, every: float = REPLAY_EVERY, older_than: timedelta = ORPHAN_AGE) -> None:
        """Until stopped, now and then: settle the updates the engine answered with "try again"
        (storage was down), then handle updates journaled long ago and never handled: a replica
        killed after acknowledging them leaves them to the others (the engine's claim keeps
        each handled once)."""
        engine = self.dispatcher.get("engine")
        while not self._stopping.is_set():
            await self._sleep(every)
            if self._stopping.is_set():
                return
            try:
                if engine is not None:
                    await engine.settle_deferred()
                await self.replay_pending(older_than)
            except Exception as error:  # the database may still be down: next time
                log.warning("replaying the journal failed (%s)", type(error).__name__)

    def _parse(self, raw: dict) -> tuple[Update, str] | None:
        """An update as Telegram sent it: the model, and the JSON text the journal keeps."""
        try:
            return Update.model_validate(raw, context={"bot": self.bot}), json.dumps(raw, ensure_ascii=False)
        except (ValidationError, TypeError, ValueError):
            log.warning("malformed update ignored")
            return None

    async def _journal(self, updates: list[tuple[Update, str]]) -> list[tuple[Update, Start | None]]:
        """Record a batch of (update, its JSON); return the updates never seen before (duplicates
        are dropped here), each with its start where the journal read it (PostgreSQL)."""
        fresh = await journal_and_start(
            self.db.sessions.kw["bind"], TRANSPORT,
            [(str(update.update_id), payload, sender_of(update)) for update, payload in updates],
        )
        if len(fresh) < len(updates):
            DUPLICATES.labels(transport=TRANSPORT).inc(len(updates) - len(fresh))
        return [(update, fresh[str(update.update_id)]) for update, _ in updates if str(update.update_id) in fresh]

    async def _spawn(self, update: Update, prefetched: Start | None = None) -> None:
        await self._slots.acquire()
        self._in_flight.add(str(update.update_id))
        task = asyncio.create_task(self._handle(update, prefetched))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, update: Update, prefetched: Start | None) -> None:
        try:
            await self.dispatcher.feed_update(self.bot, update, prefetched=prefetched)
            self.handled += 1
        except Exception:
            log.exception("update %s failed in the adapter", update.update_id)
        finally:
            self._in_flight.discard(str(update.update_id))
            self._slots.release()

    def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when stopped."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    async def drain(self) -> None:
        """Finish the updates in flight (graceful shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class DurablePolling(Intake):
    """getUpdates → journal → acknowledge → handle.

    It asks Telegram for no more updates than it has free slots: updates it cannot start yet
    wait at Telegram, not in a queue of this process (backpressure), so each update's handling
    starts as soon as it is received.
    """

    def __init__(self, bot: Bot, dispatcher: Dispatcher, db: Database, *, timeout: int = 25,
                 concurrency: int | None = None) -> None:
        super().__init__(bot, dispatcher, db, concurrency=concurrency)
        self.timeout = timeout

    async def run(self) -> None:
        """Poll until `stop()`; then wait for the updates in flight."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        await self.replay_pending()
        replayer = asyncio.create_task(self.keep_replaying(), name="telegram journal replay")
        try:
            await self._poll()
        finally:
            replayer.cancel()
        await self.drain()

    async def _poll(self) -> None:
        offset: int | None = None
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                updates = await self._get_updates(offset, await self._free_slots())
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except TelegramRetryAfter as error:
                await self._sleep(error.retry_after)
                continue
            except (TelegramNetworkError, TelegramServerError, ClientDecodeError, OSError) as error:
                # ClientDecodeError: not JSON at all, e.g. a proxy's HTML error page
                log.warning("getUpdates failed (%s); retrying in %.0f s", type(error).__name__, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if updates is None:
                break
            if not updates:
                continue
            parsed = [item for item in map(self._parse, updates) if item is not None]
            try:
                fresh = await self._journal(parsed)
            except Exception as error:  # the database is down: do not acknowledge, fetch again later
                log.warning("could not journal updates (%s); retrying in %.0f s", type(error).__name__, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            # Acknowledged only now, after the journal commit (a malformed update too: it is skipped).
            newest = max(update_id_of(item) for item in updates)
            if newest >= 0:
                offset = newest + 1
            for update, prefetched in fresh:
                await self._spawn(update, prefetched)

    async def _free_slots(self) -> int:
        """Wait until at least one handling slot is free; return how many are (1–100)."""
        await self._slots.acquire()
        self._slots.release()
        return max(1, min(100, self.concurrency - len(self._tasks)))

    async def _get_updates(self, offset: int | None, limit: int = 100) -> list[dict] | None:
        """The next updates as Telegram sent them (None when stopped meanwhile). Through the lean
        JSON call: aiogram would build and validate a response model around the batch first."""
        payload = {"limit": limit, "timeout": self.timeout, "allowed_updates": ALLOWED}
        if offset is not None:
            payload["offset"] = offset
        request = asyncio.ensure_future(call_json(self.bot, GetUpdates, payload, retry_429=False))
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait({request, stop}, return_when=asyncio.FIRST_COMPLETED)
        if request in done:
            stop.cancel()
            return request.result()
        request.cancel()
        return None

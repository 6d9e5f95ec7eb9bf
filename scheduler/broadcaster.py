"""The one component that sends every bulk message, for every channel.

The broadcaster takes :class:`Outgoing` messages from a caller, paces them
per transport (overall rate and per-chat spacing), retries what can be
retried, pauses a whole transport when the platform says "too many
requests", and reports each message's final :class:`Outcome` back through a
callback.  It keeps no durable state: the caller (the outbox) records
outcomes in its own table.

Platform specifics live in senders (see :mod:`scheduler.senders`).  A sender
only sends one message and classifies failures by raising one of the
:class:`SendError` subclasses; every policy decision (wait, retry, give up,
skip the chat) is taken here, identically for all transports.

Usage::

    broadcaster = Broadcaster(
        {"telegram": TelegramSender(bot)},
        {"telegram": RateLimit(per_second=30, per_chat_per_second=1)},
    )

    async def record(msg: Outgoing, outcome: Outcome, message_id: str | None) -> None:
        await outbox.mark(msg.key, outcome, message_id)

    report = await broadcaster.send_many(outbox.pending(), record)
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_LIMITS",
    "TELEGRAM_LIMIT",
    "VK_LIMIT",
    "BroadcastReport",
    "Broadcaster",
    "BroadcasterClosed",
    "Fatal",
    "Outcome",
    "Outgoing",
    "RateLimit",
    "Rejected",
    "RetryAfter",
    "SendError",
    "Sender",
    "SlowDown",
    "Transient",
    "Unreachable",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------
# Messages and outcomes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    """One message to one chat on one transport.

    ``key`` is the caller's idempotency key (e.g. ``"reminder:42:user:7"``);
    within one :meth:`Broadcaster.send_many` run a key is sent at most once.
    ``text`` is the message text, or the caption when ``document``/``photo``
    is set (the caller keeps it within the platform limits: it splits long
    texts, captions are at most 1024 characters on Telegram).
    ``buttons`` are rows of ``(label, callback_data)`` for an inline keyboard.
    """

    key: str
    transport: str
    chat_id: str
    text: str
    parse_mode: str | None = "HTML"
    buttons: tuple[tuple[tuple[str, str], ...], ...] = ()
    document: tuple[str, bytes] | None = None
    photo: tuple[str, bytes] | None = None

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("Outgoing.key must not be empty")
        if not self.transport:
            raise ValueError("Outgoing.transport must not be empty")
        if self.document is not None and self.photo is not None:
            raise ValueError("Outgoing carries either a document or a photo, not both")
        if not self.text and self.document is None and self.photo is None:
            raise ValueError("Outgoing without text needs a document or a photo")
        # Be lenient with what callers pass: ints for chat ids, lists for rows.
        if not isinstance(self.chat_id, str):
            object.__setattr__(self, "chat_id", str(self.chat_id))
        buttons = tuple(tuple((str(label), str(data)) for label, data in row) for row in self.buttons)
        object.__setattr__(self, "buttons", buttons)


class Outcome(StrEnum):
    """Final result of one message."""

    SENT = "sent"
    """Delivered to the platform."""
    UNREACHABLE = "unreachable"
    """The recipient cannot be written to (blocked the bot, deleted, forbade messages)."""
    FAILED = "failed"
    """Gave up for now (transient errors, long flood wait, run aborted on this transport);
    the caller may retry later."""
    REJECTED = "rejected"
    """The platform refused this message for good (bad request); do not retry."""
    WITHDRAWN = "withdrawn"
    """Not sent: ``before_send`` said the caller no longer owns it (no platform call made)."""


# --------------------------------------------------------------------------
# Sender side: classification of failures
# --------------------------------------------------------------------------


class SendError(Exception):
    """Base of the exceptions a :class:`Sender` raises to classify a failure.

    Senders translate platform errors into exactly one of the subclasses;
    the broadcaster never looks at platform exceptions.
    """


class RetryAfter(SendError):
    """The platform asked to wait ``seconds`` before the next call.

    ``scope="transport"`` (default; Telegram 429): every call on this
    transport fails during the window, so the whole transport pauses and the
    message is retried first when the pause ends.  ``scope="chat"``: only this
    chat is throttled (e.g. VK error 9, flood control); other chats go on.
    A wait longer than the broadcaster's ``max_pause`` ends the message as
    :attr:`Outcome.FAILED` so the caller can reschedule it.
    Does not count against ``max_retries``.
    """

    def __init__(
        self,
        seconds: float,
        message: str = "",
        *,
        scope: Literal["transport", "chat"] = "transport",
    ) -> None:
        super().__init__(message or f"retry after {seconds} s")
        self.seconds = max(0.0, float(seconds))
        self.scope = scope


class SlowDown(SendError):
    """Too many requests per second (VK error 6): pause the transport briefly
    and retry, without counting a failure."""

    def __init__(self, seconds: float = 1.0, message: str = "") -> None:
        super().__init__(message or f"slow down for {seconds} s")
        self.seconds = max(0.0, float(seconds))


class Unreachable(SendError):
    """The recipient cannot be written to, permanently (Telegram 403, VK 901/902)."""


class Transient(SendError):
    """A temporary failure (5xx, network, timeout): retry with backoff."""


class Rejected(SendError):
    """The platform refused this very message for good (Telegram 400, most VK errors)."""


class Fatal(SendError):
    """The transport itself is unusable (bad token, VK error 5): stop using it for
    the rest of the run; remaining messages on it end as :attr:`Outcome.FAILED`."""


@runtime_checkable
class Sender(Protocol):
    """Sends one message on one transport.

    ``send`` returns the platform message id (or None) and raises the
    :class:`SendError` family on failure.  ``asyncio.TimeoutError`` and
    ``OSError`` escaping a sender count as :class:`Transient`; any other
    exception ends the message as FAILED without retries (and is logged).
    Senders do no pacing and no retrying of their own.
    """

    transport: str

    async def send(self, msg: Outgoing) -> str | None: ...


class BroadcasterClosed(RuntimeError):
    """The broadcaster was closed before (or while) the message was sent."""


# --------------------------------------------------------------------------
# Limits and reports
# --------------------------------------------------------------------------


@dataclass
class RateLimit:
    """Limits of one transport.

    ``per_second``: overall calls per second (``math.inf`` = unlimited).
    ``per_chat_per_second``: calls per second to one chat (None = unlimited).
    ``burst``: how many calls may go back to back after an idle period;
    even with a burst no 1-second window ever holds more than
    ``per_second`` calls.
    """

    per_second: float
    per_chat_per_second: float | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError("per_second must be positive")
        if self.per_chat_per_second is not None and not self.per_chat_per_second > 0:
            raise ValueError("per_chat_per_second must be positive or None")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


TELEGRAM_LIMIT = RateLimit(per_second=30.0, per_chat_per_second=1.0)
VK_LIMIT = RateLimit(per_second=20.0, per_chat_per_second=1.0)
DEFAULT_LIMITS: Mapping[str, RateLimit] = {"telegram": TELEGRAM_LIMIT, "vk": VK_LIMIT}


@dataclass
class BroadcastReport:
    """Counts of one :meth:`Broadcaster.send_many` run."""

    sent: int = 0
    unreachable: int = 0
    failed: int = 0
    rejected: int = 0
    abandoned: int = 0
    """Taken from the source but left without an outcome (broadcaster closed);
    ``on_result`` was not called for them: they are still pending for the caller."""
    withdrawn: int = 0
    """Messages ``before_send`` withdrew (no platform call made)."""
    duplicates: int = 0
    """Messages skipped because their key was already seen in this run."""
    attempts: int = 0
    """Platform calls made (including retries)."""
    retries: int = 0
    pauses: int = 0
    """Times a transport was paused because of RetryAfter/SlowDown."""
    elapsed: float = 0.0
    """Seconds from the start of the run to the last outcome."""

    @property
    def total(self) -> int:
        """Messages that got an outcome (and an ``on_result`` call)."""
        return self.sent + self.unreachable + self.failed + self.rejected

    @property
    def rate(self) -> float:
        """Achieved delivery rate, messages sent per second."""
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def call_rate(self) -> float:
        """Platform calls per second, retries included."""
        return self.attempts / self.elapsed if self.elapsed > 0 else 0.0

    def _count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)


OnResult = Callable[[Outgoing, Outcome, "str | None"], Awaitable[None]]
BeforeSend = Callable[[Outgoing], Awaitable["bool | None"]]


# --------------------------------------------------------------------------
# Pacer: overall rate of one transport
# --------------------------------------------------------------------------

_URGENT = 0  # retries after a transport-wide pause go first
_NORMAL = 1


class _Pacer:
    """Releases calls of one transport one at a time, at the allowed rate.

    Waiters queue in a heap ordered by (priority, arrival); a single driver
    task releases the head when three conditions hold:

    * the transport is not paused (RetryAfter/SlowDown);
    * GCRA spacing: calls are spread ``1/per_second`` apart (``burst`` lets
      that many go back to back after idling);
    * hard sliding window: the call ``N = floor(per_second)`` releases ago
      was at least ``1 s + window_margin`` before now, so no 1-second window
      ever holds more than N calls, even with jitter of up to the margin
      between the release and the moment the platform counts the call.

    In steady state this gives ``N / (1 + window_margin)`` calls per second
    (98% of the limit with the default 20 ms margin).
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
        window_margin: float,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._window = 1.0 + window_margin
        self._heap: list[tuple[int, int, asyncio.Future[float]]] = []
        self._seq = itertools.count()
        self._ring: deque[float] = deque()
        self._tat = -math.inf  # GCRA theoretical arrival time of the next call
        self._paused_until = -math.inf
        self._driver: asyncio.Task[None] | None = None
        self.set_limit(limit)

    def set_limit(self, limit: RateLimit) -> None:
        self.limit = limit
        if math.isinf(limit.per_second):
            self._interval = 0.0
            self._cap: int | None = None
        else:
            self._interval = 1.0 / limit.per_second
            self._cap = max(1, math.floor(limit.per_second + 1e-9))
        self._tau = (limit.burst - 1) * self._interval
        # Sleep overshoot (~1 ms) must not slowly erode the rate: a release
        # that is a little late still advances the schedule from its slot.
        self._slack = min(0.005, self._interval / 2)

    def pause(self, seconds: float) -> bool:
        """Pause all releases for ``seconds`` from now; True if this extended the pause."""
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            return True
        return False

    def paused_for(self, now: float) -> float:
        return max(0.0, self._paused_until - now)

    async def acquire(self, priority: int = _NORMAL) -> float:
        """Wait for a slot; return the release time."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[float] = loop.create_future()
        heapq.heappush(self._heap, (priority, next(self._seq), fut))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive(), name="broadcaster-pacer")
        return await fut

    def _next_slot(self, now: float) -> float:
        slot = max(now, self._paused_until, self._tat - self._tau)
        if self._cap is not None and len(self._ring) >= self._cap:
            slot = max(slot, self._ring[-self._cap] + self._window)
        return slot

    def _record(self, now: float) -> None:
        self._tat = max(self._tat, now - self._slack) + self._interval
        self._ring.append(now)
        cap = self._cap or 0
        while len(self._ring) > cap:
            self._ring.popleft()

    async def _drive(self) -> None:
        heap = self._heap
        try:
            while True:
                while heap and heap[0][2].done():  # cancelled waiters
                    heapq.heappop(heap)
                if not heap:
                    return
                now = self._clock()
                slot = self._next_slot(now)
                if slot > now:
                    await self._sleep(slot - now)
                    continue  # limits, pauses or the head may have changed
                _, _, fut = heapq.heappop(heap)
                self._record(now)
                fut.set_result(now)
        except BaseException as exc:
            for _, _, fut in heap:
                if not fut.done():
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(exc)
            heap.clear()
            raise

    def close(self) -> None:
        if self._driver is not None and not self._driver.done():
            self._driver.cancel()
        for _, _, fut in self._heap:
            fut.cancel()
        self._heap.clear()


# --------------------------------------------------------------------------
# Broadcaster
# --------------------------------------------------------------------------


class _Abandoned(Exception):
    """Internal: the message was dropped unsent because of close() or an aborted run."""


@dataclass(eq=False)
class _Run:
    on_result: OnResult | None
    before_send: BeforeSend | None = None
    report: BroadcastReport = field(default_factory=BroadcastReport)
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    unreachable: set[tuple[str, str]] = field(default_factory=set)
    dead: dict[str, str] = field(default_factory=dict)  # transport -> reason (Fatal)
    result_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stopping: bool = False
    error: BaseException | None = None


class Broadcaster:
    """Rate-limited, retrying sender of bulk messages for all transports.

    ``senders`` and ``limits`` are keyed by transport name; a transport
    without an entry in ``limits`` uses :data:`DEFAULT_LIMITS`.
    ``max_retries``: retries after transient failures (so at most
    ``1 + max_retries`` calls per message); ``backoff_base``/``backoff_max``:
    exponential backoff between them, with jitter.
    ``concurrency``: platform calls in flight at once.
    ``retry_after_margin``: added to every RetryAfter wait.
    ``max_pause``: a message that would have to wait longer than this for a
    flood/pause window ends as FAILED instead of holding the run.
    ``max_flood_waits``: RetryAfter/SlowDown retries per message before FAILED.
    ``window_margin``: safety margin of the 1-second window (see ``_Pacer``).
    ``prefetch``: messages taken from the source ahead of their sending.
    ``clock``/``sleep``/``rng`` are injectable for tests.
    """

    def __init__(
        self,
        senders: Mapping[str, Sender],
        limits: Mapping[str, RateLimit],
        *,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        concurrency: int = 16,
        retry_after_margin: float = 0.25,
        max_pause: float = 300.0,
        max_flood_waits: int = 20,
        window_margin: float = 0.02,
        prefetch: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self._senders = dict(senders)
        self._clock = clock
        self._sleep = sleep
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._retry_after_margin = retry_after_margin
        self._max_pause = max_pause
        self._max_flood_waits = max_flood_waits
        self._window_margin = window_margin
        self._concurrency = asyncio.Semaphore(concurrency)
        self._prefetch = prefetch if prefetch is not None else max(256, concurrency * 16)
        self._rng = rng or random.Random()
        self._limits: dict[str, RateLimit] = {}
        self._pacers: dict[str, _Pacer] = {}
        for transport in self._senders:
            limit = limits.get(transport) or DEFAULT_LIMITS.get(transport)
            if limit is None:
                raise ValueError(f"no rate limit for transport {transport!r}")
            self.set_limit(transport, limit)
        # Per-chat state, shared by all runs and send_one calls.
        self._chat_next: dict[tuple[str, str], float] = {}
        self._chat_locks: dict[tuple[str, str], list] = {}  # key -> [Lock, users]
        # Tasks currently inside a platform call or on_result: close() lets them finish.
        self._shielded: set[asyncio.Task[object]] = set()
        self._runs: set[_Run] = set()
        self._closed = False

    # -- configuration ----------------------------------------------------

    def set_limit(self, transport: str, limit: RateLimit) -> None:
        """Replace the limits of a transport (takes effect for the next release)."""
        self._limits[transport] = limit
        pacer = self._pacers.get(transport)
        if pacer is None:
            self._pacers[transport] = _Pacer(
                limit, clock=self._clock, sleep=self._sleep, window_margin=self._window_margin
            )
        else:
            pacer.set_limit(limit)

    def limit(self, transport: str) -> RateLimit:
        return self._limits[transport]

    @property
    def transports(self) -> list[str]:
        """The transports this broadcaster has senders for."""
        return list(self._senders)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- public sending API -----------------------------------------------

    async def send_one(self, msg: Outgoing) -> Outcome:
        """Send one message, honouring limits, pauses and retries; return its outcome.

        Raises :class:`BroadcasterClosed` if the broadcaster is (or gets)
        closed before the message has a final outcome.
        """
        self._ensure_open()
        run = _Run(on_result=None)
        self._runs.add(run)
        task = asyncio.ensure_future(self._process(msg, run))
        run.tasks.add(task)
        try:
            outcome, _ = await task
            return outcome
        except _Abandoned:
            raise BroadcasterClosed("broadcaster closed before the message was sent") from None
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and self._closed and (me is None or me.cancelling() == 0):
                raise BroadcasterClosed("broadcaster closed before the message was sent") from None
            raise
        finally:
            self._runs.discard(run)

    async def send_many(
        self,
        messages: Iterable[Outgoing] | AsyncIterable[Outgoing],
        on_result: OnResult,
        *,
        before_send: BeforeSend | None = None,
    ) -> BroadcastReport:
        """Send all ``messages``; await ``on_result(msg, outcome, message_id)`` for each.

        ``before_send(msg)``, when given, is awaited right before a message's first platform
        call (not before retries): the caller can record that the message is about to leave, so
        that after a crash it can tell messages never attempted (safe to send again) from those
        that may have reached the platform.  Calls may overlap (one per message in flight).  If
        it returns False the message is not sent: its outcome is ``WITHDRAWN``.

        Messages to different chats go concurrently within the limits;
        messages to one chat go in source order, spaced by the per-chat limit.
        Guarantees about ``on_result``:

        * it is awaited exactly once per message that gets an outcome, right
          after that outcome, and before the next message to the same chat is
          attempted;
        * calls never overlap (they are serialized), so a caller may use one
          database session in it;
        * if it raises, the run stops: no new platform call is started,
          calls already in flight finish (and get their ``on_result``), and
          the first exception is re-raised.  Messages left unsent get no
          ``on_result`` and remain pending on the caller's side.

        Messages with a key already seen in this run are skipped (counted as
        ``duplicates``, no ``on_result``).  If the broadcaster is closed
        during the run, the report counts the messages left as ``abandoned``.
        """
        self._ensure_open()
        run = _Run(on_result=on_result, before_send=before_send)
        report = run.report
        self._runs.add(run)
        started = self._clock()
        room = asyncio.Semaphore(self._prefetch)
        seen: set[str] = set()
        source = _aiter(messages)

        def finished(task: asyncio.Task[object]) -> None:
            room.release()
            run.tasks.discard(task)
            if task.cancelled():
                report.abandoned += 1
                return
            exc = task.exception()
            if isinstance(exc, _Abandoned):
                report.abandoned += 1
            elif exc is not None:
                self._abort(run, exc)

        try:
            while not (run.stopping or self._closed):
                await room.acquire()
                if run.stopping or self._closed:
                    room.release()
                    break
                try:
                    msg = await anext(source)
                except StopAsyncIteration:
                    room.release()
                    break
                except Exception as exc:  # the caller's source failed: stop like on_result errors
                    room.release()
                    self._abort(run, exc)
                    break
                if msg.key in seen:
                    report.duplicates += 1
                    log.warning("broadcast: duplicate key %s skipped", msg.key)
                    room.release()
                    continue
                seen.add(msg.key)
                task = asyncio.create_task(self._process(msg, run))
                run.tasks.add(task)
                task.add_done_callback(finished)
            while run.tasks:
                await asyncio.wait(set(run.tasks))
        except BaseException:
            for task in run.tasks:
                task.cancel()
            if run.tasks:
                await asyncio.wait(set(run.tasks))
            raise
        finally:
            report.elapsed = self._clock() - started
            self._runs.discard(run)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if run.error is not None:
            raise run.error
        return report

    async def close(self, timeout: float = 10.0) -> None:
        """Stop sending.

        Messages waiting (for a rate slot, a pause or a backoff) are dropped
        unsent; platform calls in flight get up to ``timeout`` seconds to
        finish and their ``on_result`` is still awaited.  Then senders that
        have a ``close()`` are closed.  Further sends raise BroadcasterClosed.
        """
        if self._closed:
            return
        self._closed = True
        tasks = {task for run in self._runs for task in run.tasks}
        for task in tasks:
            if task not in self._shielded:
                task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for pacer in self._pacers.values():
            pacer.close()
        for sender in self._senders.values():
            closer = getattr(sender, "close", None)
            if closer is not None:
                try:
                    result = closer()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("broadcast: closing the %s sender failed", sender.transport)

    # -- internals ----------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed:
            raise BroadcasterClosed("broadcaster is closed")

    def _abort(self, run: _Run, exc: BaseException) -> None:
        """Stop a run after an on_result/source error: drop everything not in flight."""
        if run.error is None:
            run.error = exc
            log.error("broadcast: run aborted: %r", exc)
        run.stopping = True
        for task in run.tasks:
            if task not in self._shielded:
                task.cancel()

    def _check_live(self, run: _Run) -> None:
        if self._closed or run.stopping:
            raise _Abandoned

    @contextlib.asynccontextmanager
    async def _chat_turn(self, chat: tuple[str, str]) -> AsyncIterator[None]:
        """One message at a time per chat, in arrival order (asyncio.Lock is FIFO)."""
        entry = self._chat_locks.get(chat)
        if entry is None:
            entry = self._chat_locks[chat] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._chat_locks[chat]

    async def _process(self, msg: Outgoing, run: _Run) -> tuple[Outcome, str | None]:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with self._chat_turn((msg.transport, msg.chat_id)):
                outcome, message_id = await self._deliver(msg, run, task)
                run.report._count(outcome)
                if run.on_result is not None:
                    self._shielded.add(task)
                    async with run.result_lock:
                        await run.on_result(msg, outcome, message_id)
                return outcome, message_id
        finally:
            self._shielded.discard(task)

    def _backoff(self, failures: int) -> float:
        delay = min(self._backoff_max, self._backoff_base * 2 ** (failures - 1))
        return min(self._backoff_max, delay * (0.75 + 0.5 * self._rng.random()))

    def _set_chat_next(self, chat: tuple[str, str], when: float) -> None:
        if len(self._chat_next) > 50_000:  # forget chats whose spacing has long passed
            now = self._clock()
            for key in [k for k, t in self._chat_next.items() if t <= now]:
                del self._chat_next[key]
        self._chat_next[chat] = when

    async def _deliver(
        self, msg: Outgoing, run: _Run, task: asyncio.Task[object]
    ) -> tuple[Outcome, str | None]:
        """Attempt ``msg`` until it has a final outcome.

        Called holding the chat's turn.  On return after a platform call the
        task stays shielded so that close() lets its on_result run.
        """
        sender = self._senders.get(msg.transport)
        if sender is None:
            log.error("broadcast: %s: no sender for transport %r", msg.key, msg.transport)
            return Outcome.REJECTED, None
        pacer = self._pacers[msg.transport]
        chat = (msg.transport, msg.chat_id)
        report = run.report
        failures = 0
        flood_waits = 0
        priority = _NORMAL
        attempted = False
        # The concurrency slot is kept across flood retries, so a message hit
        # by RetryAfter re-enters the pacer (first, with _URGENT priority) even
        # when fresh messages hold all the other slots.
        holding = False
        try:
            while True:
                self._check_live(run)
                if chat in run.unreachable:
                    return Outcome.UNREACHABLE, None
                if msg.transport in run.dead:
                    return Outcome.FAILED, None

                now = self._clock()
                chat_wait = self._chat_next.get(chat, -math.inf) - now
                if max(chat_wait, pacer.paused_for(now)) > self._max_pause:
                    log.warning("broadcast: %s: flood wait too long, giving up for now", msg.key)
                    return Outcome.FAILED, None
                if chat_wait > 0:
                    # A flood retry keeps its slot (see above); others free it while waiting.
                    if holding and priority != _URGENT:
                        self._concurrency.release()
                        holding = False
                    await self._sleep(chat_wait)
                    continue  # re-check: closed, paused, unreachable meanwhile

                if not holding:
                    await self._concurrency.acquire()
                    holding = True
                released = await pacer.acquire(priority)
                self._check_live(run)
                if msg.transport in run.dead:  # found out while this message waited
                    return Outcome.FAILED, None
                per_chat = self._limits[msg.transport].per_chat_per_second
                if per_chat is not None:
                    self._set_chat_next(chat, released + 1.0 / per_chat)
                self._shielded.add(task)  # from here on close() and aborts let the call finish
                if not attempted and run.before_send is not None:
                    # Raising aborts the run, like on_result. Once it returned the call is made
                    # even if the run is stopping meanwhile: a message marked as leaving leaves.
                    if await run.before_send(msg) is False:
                        return Outcome.WITHDRAWN, None
                attempted = True
                report.attempts += 1
                error: BaseException
                try:
                    message_id = await sender.send(msg)
                except asyncio.CancelledError:
                    self._shielded.discard(task)
                    raise
                except (SendError, TimeoutError, OSError) as exc:
                    error = exc
                except Exception:
                    log.exception("broadcast: %s: sender %s crashed", msg.key, msg.transport)
                    return Outcome.FAILED, None
                else:
                    return Outcome.SENT, message_id

                # The call failed: classify.
                if isinstance(error, Unreachable):
                    run.unreachable.add(chat)
                    log.info("broadcast: %s: chat %s unreachable: %s", msg.key, msg.chat_id, error)
                    return Outcome.UNREACHABLE, None
                if isinstance(error, Rejected):
                    log.warning("broadcast: %s: rejected: %s", msg.key, error)
                    return Outcome.REJECTED, None
                if isinstance(error, Fatal):
                    run.dead.setdefault(msg.transport, str(error))
                    log.error("broadcast: transport %s unusable: %s", msg.transport, error)
                    return Outcome.FAILED, None

                # Retryable: nothing is in flight for this message any more.
                self._shielded.discard(task)
                if isinstance(error, (RetryAfter, SlowDown)):
                    flood_waits += 1
                    if flood_waits > self._max_flood_waits:
                        log.warning("broadcast: %s: still throttled, giving up for now", msg.key)
                        return Outcome.FAILED, None
                    report.retries += 1
                    if isinstance(error, RetryAfter) and error.scope == "chat":
                        until = self._clock() + error.seconds + self._retry_after_margin
                        self._set_chat_next(chat, max(until, self._chat_next.get(chat, -math.inf)))
                    else:
                        wait = error.seconds
                        if isinstance(error, RetryAfter):
                            wait += self._retry_after_margin
                        if pacer.pause(wait):
                            report.pauses += 1
                            log.warning(
                                "broadcast: %s paused for %.2f s: %s", msg.transport, wait, error
                            )
                        priority = _URGENT
                    continue

                failures += 1
                if failures > self._max_retries:
                    log.warning(
                        "broadcast: %s: failed after %d attempts: %s", msg.key, failures, error
                    )
                    return Outcome.FAILED, None
                report.retries += 1
                delay = self._backoff(failures)
                log.info("broadcast: %s: transient error (%s), retry in %.2f s", msg.key, error, delay)
                self._concurrency.release()
                holding = False
                await self._sleep(delay)
                priority = _NORMAL
        finally:
            if holding:
                self._concurrency.release()


async def _aiter(messages: Iterable[Outgoing] | AsyncIterable[Outgoing]) -> AsyncIterator[Outgoing]:
    if isinstance(messages, AsyncIterable):
        async for msg in messages:
            yield msg
    else:
        for msg in messages:
            yield msg

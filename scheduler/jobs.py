"""Scheduled jobs: thin wrappers that ask a service what is due and hand it to the broadcaster.

Job ids are fixed and replaced on start, the job store is in memory (the due work itself lives
in the database), misfires run late rather than never (`misfire_grace_time=None`) and pile-ups
collapse into one run (`coalesce=True`, one instance at a time).

Stopping: APScheduler's `shutdown()` cancels a running coroutine job, which could cut a send
in the middle. So each dispatch runs as its own task, which the job starts and does not await
(a tick while it runs only adjusts the pace); the owner closes the broadcaster (calls in flight
finish and are recorded, the rest are released back to pending) and then awaits
`BotScheduler.drain()`. `start_for_app` arranges exactly that.

Replicas on PostgreSQL share the platforms' per-token rate limits: every tick counts the
processes present (`scheduler.locks.Presence`) and paces this one at its share.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.metrics import FAILED, JOBS, SENDING_PROCESSES, SENT
from scheduler.broadcaster import Broadcaster, RateLimit
from scheduler.dispatch import dispatch_due, release_claims
from scheduler.locks import Presence
from storage.services import events as event_service
from storage.services.outbox import parse_quiet_hours
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

DISPATCH_JOB = "outbox:dispatch"
EVENTS_AFTER_JOB = "events:after"
DISPATCH_SECONDS = 5
EVENTS_AFTER_SECONDS = 300


class BotScheduler(AsyncIOScheduler):
    """An AsyncIOScheduler whose dispatch runs survive `shutdown()` until `drain()` awaits them."""

    def __init__(self, *args: Any, presence: Presence | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ticks: set[asyncio.Task] = set()
        self.presence = presence

    def track(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.ticks.add(task)
        task.add_done_callback(self.ticks.discard)
        return task

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for dispatch runs still going (close the broadcaster first so they end quickly)."""
        if self.ticks:
            await asyncio.wait(set(self.ticks), timeout=timeout)
        if self.presence is not None:
            await self.presence.leave()


def share_of(limit: RateLimit, processes: int) -> RateLimit:
    """One process's share of a per-token limit when `processes` send at once."""
    if processes <= 1 or math.isinf(limit.per_second):
        return limit
    return RateLimit(per_second=limit.per_second / processes, per_chat_per_second=limit.per_chat_per_second,
                     burst=max(1, limit.burst // processes))


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("outbox dispatch failed: %s", type(task.exception()).__name__, exc_info=task.exception())


def _quiet(settings_like: Any):
    spec = getattr(settings_like, "quiet_hours", None) or "22:00-08:00"
    return parse_quiet_hours(spec)


def build_scheduler(
    db: Database, broadcaster: Broadcaster, settings_like: Any, clock: Callable[[], datetime]
) -> BotScheduler:
    """A scheduler (UTC, in-memory jobs) with the outbox dispatch and the post-event job.

    `settings_like` may carry `quiet_hours` ("22:00-08:00"), `dispatch_seconds` and
    `dispatch_batch`; `clock()` gives the aware current time (tests pass a fake one).
    To stop: `scheduler.shutdown()`, `await broadcaster.close()`, `await scheduler.drain()`.
    """
    quiet = _quiet(settings_like)
    batch = int(getattr(settings_like, "dispatch_batch", 500) or 500)
    bind = db.sessions.kw.get("bind")
    single_process = bind is not None and bind.dialect.name == "sqlite"
    started: dict[str, Any] = {"released": False, "run": None, "processes": 1}
    presence = Presence(db)
    configured = {transport: broadcaster.limit(transport) for transport in broadcaster.transports}
    scheduler = BotScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": AsyncIOExecutor()},
        job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        timezone="UTC",
        presence=presence,
    )

    async def pace_for_the_cluster() -> None:
        """Every process sending through this database takes its share of the per-token limits."""
        try:
            processes = await presence.count()
        except Exception as error:
            log.warning("could not count the sending processes (%s); keeping a share of 1/%d",
                        type(error).__name__, started["processes"])
            return
        SENDING_PROCESSES.set(processes)
        if processes != started["processes"]:
            log.info("outbox: %d processes send through this database; pacing at 1/%d of the limits",
                     processes, processes)
            for transport, limit in configured.items():
                broadcaster.set_limit(transport, share_of(limit, processes))
            started["processes"] = processes

    async def dispatch_once() -> None:
        if single_process and not started["released"]:
            # One dispatcher per SQLite database: claims left by a previous process are ours.
            _released, uncertain = await release_claims(db)
            for transport, rows in uncertain.items():
                FAILED.labels(transport=transport or "none", outcome="uncertain").inc(rows)
            started["released"] = True
        report = await dispatch_due(db, broadcaster, clock(), batch=batch, quiet=quiet,
                                    owner=presence.owner, gone_owners=presence.gone)
        JOBS.labels(job=DISPATCH_JOB).inc()
        for (transport, outcome), rows in report.by_transport.items():
            if outcome == "sent":
                SENT.labels(transport=transport).inc(rows)
            elif outcome != "rescheduled":  # unreachable, failed, uncertain
                FAILED.labels(transport=transport, outcome=outcome).inc(rows)
        if report.claimed or report.unreachable or report.deferred or report.released:
            log.info("outbox: %s", report)

    async def dispatch() -> None:
        # A run still going claims what became due meanwhile itself. Returning at once (not
        # awaiting the run) keeps APScheduler from warning "maximum number of running instances
        # reached" every tick of a long broadcast.
        if broadcaster.closed:
            return
        await pace_for_the_cluster()  # every tick: a long run adapts when replicas come or go
        if started["run"] is not None and not started["run"].done():
            return
        run = started["run"] = scheduler.track(dispatch_once())
        run.add_done_callback(_log_failure)

    async def events_after() -> None:
        async with db.unit() as uow:
            queued = await event_service.queue_followups(uow, now=clock(), quiet=quiet)
            await uow.commit()
        if queued:
            log.info("events: %d post-event questions queued", queued)

    seconds = float(getattr(settings_like, "dispatch_seconds", DISPATCH_SECONDS) or DISPATCH_SECONDS)
    scheduler.add_job(dispatch, "interval", seconds=seconds, id=DISPATCH_JOB, name="send due outbox messages",
                      replace_existing=True)
    scheduler.add_job(events_after, "interval", seconds=EVENTS_AFTER_SECONDS, id=EVENTS_AFTER_JOB,
                      name="ask participants after events", replace_existing=True)
    return scheduler


# Messages a dispatch run keeps between "taken for sending" and "outcome recorded" (the
# broadcaster's prefetch; its default of 256 let sending outrun recording by hundreds). A kill -9
# can catch at most this many between their `attempting` mark and their record; those become
# `uncertain` and are not sent again (see scheduler.dispatch), so this bounds what a killed
# process can leave unconfirmed.
IN_FLIGHT_AT_MOST = 32

FEATURE_JOBS_SECONDS = {
    "mentoring:nudges": 3600,
    "surveys:campaigns": 3600,
    "deficits:nudges": 6 * 3600,
    "privacy:retention": 24 * 3600,
    "journal:prune": 24 * 3600,
    "digest:weekly": 600,
}


def add_feature_jobs(scheduler: BotScheduler, db: Database, settings_like: Any, clock: Callable[[], datetime]) -> None:
    """The jobs that only queue work (nudges, invitations, digests) or delete data (retention, the
    journal rows of handled updates), each run once per tick across every bot process
    (`job_lock`) and idempotent anyway (outbox keys; deleting what is already gone)."""
    from scheduler.locks import job_lock

    quiet = _quiet(settings_like)
    quiet_spec = getattr(settings_like, "quiet_hours", None) or "22:00-08:00"
    idle_days = int(getattr(settings_like, "idle_pair_days", 14) or 14)

    async def mentoring_nudges() -> int:
        from scheduler.jobs_mentoring import run_nudges

        return await run_nudges(db, clock(), idle_days=idle_days, quiet_hours=quiet_spec)

    async def in_unit(queue) -> int:
        async with db.unit() as uow:
            queued = await queue(uow, now=clock(), quiet=quiet)
            await uow.commit()
        return queued

    async def campaigns() -> int:
        from dialogs.flows.questionnaire import queue_campaign_messages

        return await in_unit(queue_campaign_messages)

    async def deficit_nudges() -> int:
        from dialogs.flows.deficits import queue_deficit_nudges

        return await in_unit(queue_deficit_nudges)

    async def retention() -> int:
        from storage.services.personal_data import erase_inactive

        async with db.unit() as uow:
            erased = await erase_inactive(uow, now=clock())
            await uow.commit()
        return erased

    async def journal_prune() -> int:
        from storage.repositories.inbox import KEEP_HANDLED

        async with db.unit() as uow:
            pruned = await uow.inbox.prune(clock() - KEEP_HANDLED)
            await uow.commit()
        return pruned

    async def digests() -> int:
        try:
            from scheduler.jobs_digest import run_digests
        except ImportError:
            return 0
        return await run_digests(db, clock())

    bodies = {
        "mentoring:nudges": mentoring_nudges,
        "surveys:campaigns": campaigns,
        "deficits:nudges": deficit_nudges,
        "privacy:retention": retention,
        "journal:prune": journal_prune,
        "digest:weekly": digests,
    }

    def locked(name: str, body):
        async def run() -> None:
            async with job_lock(db, name) as mine:
                if mine:
                    JOBS.labels(job=name).inc()
                    done = await body()
                    if done:
                        log.info("%s: %s", name, done)

        return run

    for name, body in bodies.items():
        scheduler.add_job(locked(name, body), "interval", seconds=FEATURE_JOBS_SECONDS[name], id=name, name=name,
                          replace_existing=True, next_run_time=clock())


def build_broadcaster(settings: Any) -> Broadcaster | None:
    """A broadcaster with a sender for each configured channel (None when there is none)."""
    senders: dict[str, Any] = {}
    limits: dict[str, RateLimit] = {}
    telegram = getattr(settings, "telegram", None)
    if telegram is not None and telegram.token is not None:
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        from scheduler.senders import TelegramSender

        # A bot of its own, without the dialog bot's retry middleware: the broadcaster paces
        # and honours 429 itself.
        bot = Bot(telegram.token.get_secret_value(),
                  session=AiohttpSession(api=TelegramAPIServer.from_base(telegram.api_base_url)))
        senders["telegram"] = TelegramSender(bot, owns_bot=True)
        limits["telegram"] = RateLimit(per_second=settings.limits.telegram_per_second,
                                       per_chat_per_second=settings.limits.telegram_per_chat_per_second)
    vk = getattr(settings, "vk", None)
    if vk is not None and vk.token is not None and vk.group_id is not None:
        from scheduler.senders import build_vk_sender

        senders["vk"] = build_vk_sender(settings)
        limits["vk"] = RateLimit(per_second=settings.limits.vk_per_second, per_chat_per_second=1.0)
        from handlers.vk.wall import WALL_LIMIT, WALL_TRANSPORT, build_wall_sender

        senders[WALL_TRANSPORT] = build_wall_sender(settings)  # event announcements on the community wall
        limits[WALL_TRANSPORT] = WALL_LIMIT
    if not senders:
        return None
    return Broadcaster(senders, limits, prefetch=IN_FLIGHT_AT_MOST)


def start_for_app(app: Any) -> BotScheduler | None:
    """Start the jobs of a running bot (`bot.wiring.App`); its closers stop them cleanly."""
    broadcaster = build_broadcaster(app.settings)
    if broadcaster is None:
        log.warning("no channel to send scheduled messages through: the scheduler is not started")
        return None
    scheduler = build_scheduler(app.db, broadcaster, app.settings, app.clock)
    add_feature_jobs(scheduler, app.db, app.settings, app.clock)
    scheduler.start()

    async def stop() -> None:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await broadcaster.close()  # calls in flight finish and are recorded; the rest go back to pending
        await scheduler.drain()

    app.closers.append(stop)
    return scheduler

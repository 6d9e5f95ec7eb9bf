"""Scheduled digest job: the weekly digest for every coordinator it is due for (idempotent).

Run it every few minutes (job id `JOB_ID`): it queues nothing until Monday 09:00 local time,
then each coordinator's digest of the last complete week once (see `due_digests`); the outbox
dispatcher sends the text, the PNG and the XLSX in the channel the coordinator uses.
"""

from __future__ import annotations

import logging
from datetime import datetime

from scheduler.locks import job_lock
from storage.services.digest import DEFAULT_HOUR, DEFAULT_WEEKDAY, JOB_LOCK, due_digests
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

JOB_ID = "digest:weekly"


async def run_digests(db: Database, now: datetime, *, weekday: int = DEFAULT_WEEKDAY,
                      hour: int = DEFAULT_HOUR) -> int:
    """Queue the due digests (once per tick across processes); returns how many recipients got one."""
    async with job_lock(db, JOB_LOCK) as held:
        if not held:
            return 0
        async with db.unit() as uow:
            queued = await due_digests(uow, now, weekday=weekday, hour=hour)
            await uow.commit()
    if queued:
        log.info("digests queued: %d", queued)
    return queued

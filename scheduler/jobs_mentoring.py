"""Scheduled mentoring job: reminders for idle pairs and flags for mentees waiting too long."""

from __future__ import annotations

import logging
from datetime import datetime

from storage.services.mentoring import DEFAULT_QUIET_HOURS, due_nudges
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

JOB_ID = "mentoring:nudges"


async def run_nudges(db: Database, now: datetime, *, idle_days: int = 14,
                     quiet_hours: str = DEFAULT_QUIET_HOURS) -> int:
    """Queue the due nudges in the outbox (idempotent: safe to run as often as wanted); returns how many."""
    async with db.unit() as uow:
        queued = await due_nudges(uow, now, idle_days, quiet_hours=quiet_hours)
        await uow.commit()
    if queued:
        log.info("mentoring nudges queued: %d", queued)
    return queued

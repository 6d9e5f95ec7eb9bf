"""Quiet hours in the recipient's local time, from Kaliningrad to Vladivostok, and across DST."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from storage.services.outbox import outside_quiet_hours, parse_quiet_hours

QUIET = parse_quiet_hours("22:00-08:00")
UTC = timezone.utc


@pytest.mark.parametrize(
    ("zone", "due_utc", "expected_utc"),
    [
        ("Europe/Kaliningrad", datetime(2026, 12, 1, 21, 30, tzinfo=UTC), datetime(2026, 12, 2, 6, 0, tzinfo=UTC)),
        ("Europe/Moscow", datetime(2026, 12, 1, 12, 0, tzinfo=UTC), datetime(2026, 12, 1, 12, 0, tzinfo=UTC)),
        ("Asia/Yekaterinburg", datetime(2026, 12, 1, 1, 0, tzinfo=UTC), datetime(2026, 12, 1, 3, 0, tzinfo=UTC)),
        ("Asia/Vladivostok", datetime(2026, 12, 1, 12, 30, tzinfo=UTC), datetime(2026, 12, 1, 22, 0, tzinfo=UTC)),
        ("Asia/Vladivostok", datetime(2026, 11, 30, 22, 0, tzinfo=UTC), datetime(2026, 11, 30, 22, 0, tzinfo=UTC)),
    ],
)
def test_a_message_due_at_night_waits_for_the_local_morning(zone, due_utc, expected_utc):
    assert outside_quiet_hours(due_utc, zone, QUIET) == expected_utc


def test_across_a_daylight_saving_change_the_morning_is_still_eight_local():
    # Europe/Berlin leaves summer time on 2026-10-25 at 03:00 local (01:00 UTC).
    night = datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 23:00 local, summer time

    moved = outside_quiet_hours(night, "Europe/Berlin", QUIET)

    assert moved == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)  # 08:00 local, winter time (UTC+1)

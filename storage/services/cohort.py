"""Who counts as a young teacher: стаж and age bands, recomputed every school year."""

from __future__ import annotations

from datetime import date

BANDS = ("lt1", "1to2", "2to3", "3plus")


def school_year_start(today: date) -> int:
    """The calendar year in which the current school year began (it begins on 1 September)."""
    return today.year if today.month >= 9 else today.year - 1


def experience_years(teaching_start_year: int | None, today: date) -> int | None:
    """Full school years of teaching: 0 in the first school year."""
    if teaching_start_year is None:
        return None
    return max(0, school_year_start(today) - teaching_start_year)


def experience_band(teaching_start_year: int | None, today: date) -> str | None:
    """The стаж band of Приложение 3 Q3: до 1 года, от 1 до 2, от 2 до 3, or 3 and more."""
    years = experience_years(teaching_start_year, today)
    if years is None:
        return None
    return BANDS[min(years, 3)]


def is_young(
    *,
    teaching_start_year: int | None,
    birth_year: int | None,
    today: date,
    max_experience_years: int = 3,
    max_age: int | None = None,
) -> bool:
    """The municipality's rule: стаж under `max_experience_years`, and age up to `max_age` if set."""
    years = experience_years(teaching_start_year, today)
    if years is None or years >= max_experience_years:
        return False
    if max_age is not None:
        if birth_year is None:
            return False
        return today.year - birth_year <= max_age
    return True

"""Reference data: municipalities and their organisations.

Reference rows change rarely (an import, a new consent revision), while every dialog step reads
them, so reads are cached in-process for a short time (`CACHE_SECONDS`); writers call
`forget_reference_cache()`, and another process sees a change within that time.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Municipality, Organisation


CACHE_SECONDS = 30.0
_cache: dict[tuple, tuple[float, object]] = {}


def forget_reference_cache() -> None:
    """Drop cached reference rows (after an import or an edit in this process)."""
    _cache.clear()


def cached(key: tuple):
    """A value remembered under `key` in the last `CACHE_SECONDS` (None when there is none)."""
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    return None


def remember(key: tuple, value):
    """Remember a value read from the database (forgotten with the rest of the cache)."""
    _cache[key] = (time.monotonic(), value)
    return value


def fold(text: str) -> str:
    """Case- and ё-insensitive form for searching names."""
    return text.casefold().replace("ё", "е")


class ReferenceRepository:
    """Queries over municipalities and organisations."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def municipalities(self) -> list[Municipality]:
        return list((await self.session.execute(select(Municipality).order_by(Municipality.name))).scalars())

    async def municipality(self, municipality_id: int) -> Municipality | None:
        """A municipality; a recent read is reused from the cache without a query."""
        hit = cached(("municipality", municipality_id))
        if hit is not None:
            # Into this session without a query, so it can be related to other rows here.
            return await self.session.merge(hit, load=False)
        found = await self.session.get(Municipality, municipality_id)
        if found is not None:
            copy = Municipality(**{c.key: getattr(found, c.key) for c in Municipality.__mapper__.column_attrs})
            make_transient_to_detached(copy)
            remember(("municipality", municipality_id), copy)
        return found

    async def municipality_by_code(self, code: str) -> Municipality | None:
        return (
            await self.session.execute(select(Municipality).where(Municipality.code == code))
        ).scalar_one_or_none()

    async def organisation(self, organisation_id: int) -> Organisation | None:
        return await self.session.get(Organisation, organisation_id)

    async def organisations(
        self, municipality_id: int, *, kind: str | None = None, query: str | None = None
    ) -> list[Organisation]:
        """Organisations of a municipality, optionally of one kind and matching part of a name.

        The rows are read-only copies (for lists and search), not attached to the session."""
        key = ("organisations", municipality_id, kind)
        rows = cached(key)
        if rows is None:
            statement = select(Organisation).where(Organisation.municipality_id == municipality_id)
            if kind:
                statement = statement.where(Organisation.kind == kind)
            rows = [
                Organisation(id=row.id, municipality_id=row.municipality_id, name=row.name, kind=row.kind)
                for row in (await self.session.execute(statement.order_by(Organisation.name))).scalars()
            ]
            remember(key, rows)
        if query:
            needle = fold(query.strip())
            rows = [row for row in rows if needle in fold(row.name)]
        return rows

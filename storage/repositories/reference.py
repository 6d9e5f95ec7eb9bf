"""Reference data: municipalities and their organisations."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Municipality, Organisation


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
        return await self.session.get(Municipality, municipality_id)

    async def municipality_by_code(self, code: str) -> Municipality | None:
        return (
            await self.session.execute(select(Municipality).where(Municipality.code == code))
        ).scalar_one_or_none()

    async def organisation(self, organisation_id: int) -> Organisation | None:
        return await self.session.get(Organisation, organisation_id)

    async def organisations(
        self, municipality_id: int, *, kind: str | None = None, query: str | None = None
    ) -> list[Organisation]:
        """Organisations of a municipality, optionally of one kind and matching part of a name."""
        statement = select(Organisation).where(Organisation.municipality_id == municipality_id)
        if kind:
            statement = statement.where(Organisation.kind == kind)
        rows = list((await self.session.execute(statement.order_by(Organisation.name))).scalars())
        if query:
            needle = fold(query.strip())
            rows = [row for row in rows if needle in fold(row.name)]
        return rows

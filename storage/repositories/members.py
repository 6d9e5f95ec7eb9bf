"""Members: registered people."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Member


class MemberRepository:
    """Queries over members."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, member_id: int) -> Member | None:
        return await self.session.get(Member, member_id)

    def add(self, member: Member) -> None:
        self.session.add(member)

    async def in_municipality(self, municipality_id: int, *, role: str | None = None) -> list[Member]:
        query = select(Member).where(Member.municipality_id == municipality_id)
        if role is not None:
            query = query.where(Member.role == role)
        return list((await self.session.execute(query.order_by(Member.id))).scalars())

    async def pending_mentors(self, municipality_id: int) -> list[Member]:
        """Mentors of the municipality whose role the coordinator has not yet confirmed."""
        query = select(Member).where(
            Member.municipality_id == municipality_id, Member.role == "mentor", Member.mentor_confirmed.is_(False)
        )
        return list((await self.session.execute(query.order_by(Member.id))).scalars())

    async def count(self) -> int:
        return (await self.session.execute(select(func.count(Member.id)))).scalar_one()

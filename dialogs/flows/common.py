"""Pieces shared by flows: validators, the main-menu registry, small helpers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from dialogs.context import Ctx
from dialogs.model import Choice, InputError
from storage.models import Member, Municipality

NAME_PART = re.compile(r"^[A-Za-zА-Яа-яЁё]+(?:[-'][A-Za-zА-Яа-яЁё]+)*$")


def validate_full_name(text: str, _ctx: Ctx) -> str:
    """Фамилия Имя [Отчество]: two to four words of letters, each capitalised on saving."""
    parts = text.split()
    if not 2 <= len(parts) <= 4 or not all(NAME_PART.match(part) for part in parts):
        raise InputError(
            "Напишите фамилию, имя и отчество буквами через пробел, например: Иванова Мария Петровна."
        )
    if len(text) > 100:
        raise InputError("Слишком длинно: не больше 100 символов.")
    return " ".join(part[:1].upper() + part[1:] for part in parts)


def year_validator(low: Callable[[Ctx], int], high: Callable[[Ctx], int], what: str):
    """A validator of a four-digit year between two bounds computed from the context."""

    def validate(text: str, ctx: Ctx) -> int:
        cleaned = text.strip().rstrip("г.").strip()
        if not re.fullmatch(r"\d{4}", cleaned):
            raise InputError(f"{what}: напишите год четырьмя цифрами, например {ctx.now.year - 1}.")
        year = int(cleaned)
        if not low(ctx) <= year <= high(ctx):
            raise InputError(f"{what}: год должен быть от {low(ctx)} до {high(ctx)}.")
        return year

    return validate


def choices_of(mapping: dict[str, str], exclude: Iterable[str] = ()) -> list[Choice]:
    """Choices from a code → label mapping, in its order."""
    skip = set(exclude)
    return [Choice(code, label) for code, label in mapping.items() if code not in skip]


def fixed(mapping: dict[str, str], exclude: Iterable[str] = ()):
    """A choice source over a fixed mapping."""
    items = choices_of(mapping, exclude)

    async def source(_ctx: Ctx, _query: str | None) -> list[Choice]:
        return items

    return source


async def municipality_id_of(ctx: Ctx) -> int | None:
    """The id of the member's municipality, or of the one chosen before registration (no query
    for the municipality itself: an organisation search needs only its id)."""
    member = await ctx.member()
    municipality_id = member.municipality_id if member else ctx.data.get("_muni")
    return None if municipality_id is None else int(municipality_id)


async def municipality_of(ctx: Ctx) -> Municipality | None:
    """The member's municipality, or the one chosen before registration."""
    municipality_id = await municipality_id_of(ctx)
    return None if municipality_id is None else await ctx.uow.reference.municipality(municipality_id)


# ---- the main menu registry ---------------------------------------------------------------


@dataclass(frozen=True)
class MenuItem:
    """An entry of the main menu: who sees it and where it leads."""

    id: str
    label: str
    target: str
    roles: frozenset[str]
    order: int = 50
    visible: Callable[[Member], bool] | None = None


MENU: list[MenuItem] = []


def menu_item(item: MenuItem) -> None:
    """Register a main-menu entry (feature modules call this at import)."""
    if any(existing.id == item.id for existing in MENU):
        raise ValueError(f"menu item {item.id} registered twice")
    MENU.append(item)
    MENU.sort(key=lambda entry: entry.order)


def menu_for(member: Member) -> list[MenuItem]:
    """The entries a member sees."""
    return [
        item for item in MENU
        if member.role in item.roles and (item.visible is None or item.visible(member))
    ]


def after_edit(default: str):
    """Go to `default`, or back to the review screen when the user came from there to fix a field."""

    def target(ctx: Ctx) -> str:
        return ctx.data.pop("_return_to", None) or default

    return target

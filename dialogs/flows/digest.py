"""The weekly digest on demand («🗞 Дайджест недели», /digest) and the coordinator's denominators.

/digest shows the current week so far with its chart (PNG) and workbook (XLSX); the buttons step
to earlier weeks or pick one from a list. A municipal coordinator sees their own municipality, a
regional coordinator the comparison of their region's municipalities, an admin chooses a
municipality first. «🎯 Целевые показатели» asks for the figures the bot cannot know (how many
young teachers and teachers the municipality has), which the indicator tracker divides by.
"""

from __future__ import annotations

from datetime import date, timedelta

from dialogs.context import Ctx
from dialogs.engine import Command
from dialogs.flows import texts as T
from dialogs.flows.common import MenuItem, menu_item
from dialogs.model import Button, Choice, Flow, InputError, OutFile, Screen
from storage.models import Role
from storage.services import digest as D
from storage.services.errors import Forbidden, NotFound

READERS = frozenset({Role.COORDINATOR, Role.REGIONAL, Role.ADMIN})
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})
EARLIER_WEEKS = 12

menu_item(MenuItem("digest", "🗞 Дайджест недели", "flow:digest", READERS, order=33))
menu_item(MenuItem("digest_targets", "🎯 Целевые показатели", "flow:digest_targets", COORDINATORS, order=34))

PICK_MUNICIPALITY = "Для какого муниципалитета показать дайджест?"
PICK_WEEK = "За какую неделю показать дайджест?"
NO_REGION = "Не удалось определить ваш регион: обратитесь к администратору."
NO_MUNICIPALITY = "Целевые показатели задаёт координатор муниципалитета."
ASK_VALUE = "{label}.\n\nНапишите число (сейчас: {current})."
BAD_VALUE = "Напишите целое число от 1 до 1 000 000, например 240."
SAVED = "Сохранено: {value}. Показатели дайджеста пересчитаются с этим знаменателем."
TARGETS_INTRO = (
    "Целевые показатели. Бот знает только тех, кто зарегистрировался; чтобы считать доли от всех "
    "педагогов муниципалитета (например, «не менее 70 % педагогов до 35 лет вовлечены в формы поддержки»), "
    "введите численность по данным кадрового учёта."
)
PREPARING = "Готовлю дайджест…"


# ---- which digest ----------------------------------------------------------------------------


async def _member(ctx: Ctx):
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


async def _timezone(ctx: Ctx) -> str:
    municipality_id = ctx.data.get("muni_id")
    if municipality_id is None:
        member = await _member(ctx)
        municipality_id = member.municipality_id
    municipality = await ctx.uow.reference.municipality(int(municipality_id)) if municipality_id else None
    return municipality.timezone if municipality else "Europe/Moscow"


async def _week(ctx: Ctx) -> tuple[int, int]:
    """The chosen week, or the current one in the municipality's time."""
    if ctx.data.get("week"):
        return D.parse_week(ctx.data["week"])
    return D.week_of(ctx.now, await _timezone(ctx))


async def _digest(ctx: Ctx):
    """The digest this screen shows, built once per event (the text and the files share it)."""
    cached = ctx.__dict__.get("_digest")
    if cached is not None:
        return cached
    member = await _member(ctx)
    year, week = await _week(ctx)
    if member.role == Role.REGIONAL:
        digest = await D.regional_digest_for(ctx.uow, member, year=year, week=week, now=ctx.now)
    else:
        muni = ctx.data.get("muni_id")
        digest = await D.digest_for(ctx.uow, member, year=year, week=week, now=ctx.now,
                                    municipality_id=int(muni) if muni else None)
    ctx.__dict__["_digest"] = digest
    return digest


async def route(ctx: Ctx) -> str:
    """An admin without a municipality chooses one; everyone else sees their digest at once."""
    member = await _member(ctx)
    if member.role == Role.ADMIN and member.municipality_id is None and not ctx.data.get("muni_id"):
        return "muni"
    return "show"


async def show_text(ctx: Ctx) -> str:
    try:
        return D.render_text(await _digest(ctx))
    except Forbidden:
        return T.NO_RIGHTS
    except NotFound:
        return NO_REGION


async def show_files(ctx: Ctx) -> list[OutFile]:
    try:
        digest = await _digest(ctx)
    except (Forbidden, NotFound):
        return []
    regional = isinstance(digest, D.RegionalDigest)
    rendered = D.render(digest)
    return [
        OutFile(rendered.chart_name, rendered.chart, "photo",
                caption=D.REGIONAL_CHART_CAPTION if regional else D.CHART_CAPTION),
        OutFile(rendered.workbook_name, rendered.workbook, "document", caption=D.WORKBOOK_CAPTION),
    ]


def step(weeks: int):
    """Move to the previous (-1) or next (+1) week."""

    async def action(ctx: Ctx) -> str:
        year, week = await _week(ctx)
        year, week = D.shift_week(year, week, weeks)
        current = D.week_of(ctx.now, await _timezone(ctx))
        ctx.data["week"] = None if (year, week) >= current else D.week_label(year, week)
        return "show"

    return action


def not_current(ctx: Ctx) -> bool:
    return bool(ctx.data.get("week"))


def is_municipal(ctx: Ctx) -> bool:
    return ctx.data.get("_role") in COORDINATORS


async def remember_role(ctx: Ctx) -> str:
    member = await _member(ctx)
    ctx.data["_role"] = member.role
    return await route(ctx)


async def week_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    year, week = D.week_of(ctx.now, await _timezone(ctx))
    choices = [Choice("", "Текущая неделя")]
    for back in range(1, EARLIER_WEEKS + 1):
        y, w = D.shift_week(year, week, -back)
        monday = date.fromisocalendar(y, w, 1)
        sunday = monday + timedelta(days=6)
        choices.append(Choice(D.week_label(y, w), f"{monday:%d.%m} – {sunday:%d.%m.%Y} (неделя {w})"))
    return choices


async def municipality_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(str(m.id), m.name) for m in await ctx.uow.reference.municipalities()]


DIGEST = Flow(
    name="digest",
    start="start",
    title="дайджест недели",
    requires="member",
    roles=READERS,
    screens=[
        Screen("start", text=PREPARING, on_enter=remember_role, back=False, cancel=False),
        Screen("muni", text=PICK_MUNICIPALITY, choices=municipality_choices, save_as="muni_id", go="show",
               back=False, per_page=10),
        Screen("show", text=show_text, files=show_files, back=False, cancel=False, buttons=[
            Button("◀ Неделя раньше", "prev", action=step(-1)),
            Button("Неделя позже ▶", "next", action=step(+1), show_if=not_current),
            Button("Выбрать неделю", "pick", go="pick"),
            Button("🎯 Целевые показатели", "targets", go="flow:digest_targets", show_if=is_municipal),
            Button("В меню", "menu", go="flow:menu"),
        ]),
        Screen("pick", text=PICK_WEEK, choices=week_choices, save_as="week", go="show", per_page=7),
    ],
)


# ---- denominators ------------------------------------------------------------------------------


async def targets_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    if member.municipality_id is None:
        return NO_MUNICIPALITY
    values = await D.denominators(ctx.uow, member.municipality_id)
    lines = [TARGETS_INTRO, ""]
    lines += [f"• {label}: {values.get(kind, 'не введено')}" for kind, label in D.DENOMINATORS.items()]
    return "\n".join(lines)


def has_municipality(ctx: Ctx) -> bool:
    return ctx.data.get("_has_muni", False)


async def load_targets(ctx: Ctx) -> None:
    member = await _member(ctx)
    ctx.data["_has_muni"] = member.municipality_id is not None
    return None


async def ask_value(ctx: Ctx) -> str:
    member = await _member(ctx)
    kind = ctx.data.get("kind", D.YOUNG_TOTAL)
    values = await D.denominators(ctx.uow, member.municipality_id) if member.municipality_id else {}
    return ASK_VALUE.format(label=D.DENOMINATORS[kind], current=values.get(kind, "не введено"))


def parse_value(text: str, _ctx: Ctx) -> int:
    cleaned = text.replace(" ", "").replace("\u00a0", "")
    if not cleaned.isdigit() or not 1 <= int(cleaned) <= D.MAX_DENOMINATOR:
        raise InputError(BAD_VALUE)
    return int(cleaned)


async def save_value(ctx: Ctx) -> str:
    member = await _member(ctx)
    try:
        await D.set_denominator(ctx.uow, member, kind=ctx.data["kind"], value=int(ctx.data["value"]), now=ctx.now)
    except Forbidden:
        ctx.say(T.NO_RIGHTS)
        return "show"
    ctx.say(SAVED.format(value=ctx.data["value"]))
    return "show"


TARGETS = Flow(
    name="digest_targets",
    start="show",
    title="целевые показатели",
    requires="member",
    roles=COORDINATORS,
    screens=[
        Screen("show", text=targets_text, on_enter=load_targets, back=False, cancel=False, buttons=[
            Button("Педагоги до 35 лет со стажем до 3 лет", "young", save={"kind": D.YOUNG_TOTAL}, go="value",
                   show_if=has_municipality),
            Button("Все педагоги муниципалитета", "all", save={"kind": D.TEACHERS_TOTAL}, go="value",
                   show_if=has_municipality),
            Button("🗞 Дайджест недели", "digest", go="flow:digest"),
            Button("В меню", "menu", go="flow:menu"),
        ]),
        Screen("value", text=ask_value, input=parse_value, save_as="value", go=save_value, max_length=12),
    ],
)

FLOWS = [DIGEST, TARGETS]
COMMANDS = [Command("digest", "flow:digest", description="Дайджест недели (координаторам)")]

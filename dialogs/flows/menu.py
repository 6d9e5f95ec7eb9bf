"""The main menu for each role, the profile, and the coordinator's confirmation of mentors."""

from __future__ import annotations

from dialogs.context import Ctx
from dialogs.flows import texts as T
from dialogs.flows.common import (
    MENU,
    MenuItem,
    fixed,
    menu_for,
    menu_item,
    validate_full_name,
    year_validator,
)
from dialogs.flows.registration import organisation_choices, position_choices
from dialogs.flows.onboarding import HELP
from dialogs.model import Button, Choice, Flow, Screen
from storage.models import Role
from storage.services import members as member_service
from storage.services.cohort import experience_band, is_young
from storage.services.errors import Conflict, Forbidden, NotFound

EVERYONE = frozenset(Role)
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})
BANDS = {"lt1": "до 1 года", "1to2": "от 1 года до 2 лет", "2to3": "от 2 лет до 3 лет", "3plus": "3 года и больше"}

menu_item(MenuItem("profile", "👤 Мой профиль", "flow:profile", EVERYONE, order=90))
menu_item(MenuItem("mentors", "✅ Подтвердить наставников", "flow:confirm_mentors", COORDINATORS, order=30))
menu_item(MenuItem("help", "❓ Справка", "flow:help", EVERYONE, order=95))


async def member_or_fail(ctx: Ctx):
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


async def menu_text(ctx: Ctx) -> str:
    member = await member_or_fail(ctx)
    role = member.role
    if role == Role.TEACHER:
        municipality = member.municipality
        young = municipality is not None and is_young(
            teaching_start_year=member.teaching_start_year, birth_year=member.birth_year, today=ctx.now.date(),
            max_experience_years=municipality.young_max_experience_years, max_age=municipality.young_max_age,
        )
        role = "teacher" if young else "beginner"
    lines = [f"Главное меню. Вы — {T.ROLES.get(role, role)}."]
    if member.role == Role.MENTOR and not member.mentor_confirmed:
        lines.append("Роль наставника ждёт подтверждения координатора.")
    return "\n".join(lines)


async def menu_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    member = await member_or_fail(ctx)
    return [Choice(item.id, item.label) for item in menu_for(member)]


def menu_target(ctx: Ctx) -> str:
    chosen = ctx.data.pop("item", None)
    for item in MENU:
        if item.id == chosen:
            return item.target
    return "stay"


MAIN_MENU = Flow(
    name="menu",
    start="main",
    title="меню",
    requires="member",
    screens=[
        Screen("main", text=menu_text, choices=menu_choices, save_as="item", go=menu_target, per_page=10,
               back=False, cancel=False),
    ],
)


HELP_FLOW = Flow(
    name="help",
    start="show",
    title="справка",
    screens=[Screen("show", text=HELP, buttons=[Button("В меню", "menu", go="flow:menu")], back=False, cancel=False)],
)


# ---- profile ------------------------------------------------------------------------------


async def profile_text(ctx: Ctx) -> str:
    member = await member_or_fail(ctx)
    lines = ["Ваш профиль", "", f"ФИО: {member.full_name}", f"Роль: {T.ROLES.get(member.role, member.role)}"]
    if member.municipality is not None:
        lines.append(f"Муниципалитет: {member.municipality.name}")
    if member.role in (Role.TEACHER, Role.MENTOR):
        kind = member.organisation.kind if member.organisation else "school"
        band = experience_band(member.teaching_start_year, ctx.now.date())
        lines += [
            f"Организация: {member.organisation.name if member.organisation else '—'}",
            f"Должность: {T.POSITIONS.get(kind, {}).get(member.position or '', '—')}",
            f"Предметная область: {T.SUBJECT_AREAS.get(member.subject_area or '', '—')}",
            f"Начало работы: {member.teaching_start_year or '—'} (стаж: {BANDS.get(band or '', '—')})",
            f"Год рождения: {member.birth_year or '—'}",
        ]
    return "\n".join(lines)


def is_practitioner(ctx: Ctx) -> bool:
    return ctx.data.get("_role") in (Role.TEACHER, Role.MENTOR)


async def load_profile(ctx: Ctx) -> None:
    member = await member_or_fail(ctx)
    ctx.data["_role"] = member.role
    ctx.data["org_kind"] = member.organisation.kind if member.organisation else "school"
    return None


def saver(field: str, convert=lambda value: value):  # noqa: B008 - identity by default
    """An action that saves the screen's value into the member's profile and returns to it."""

    async def save(ctx: Ctx) -> str:
        member = await member_or_fail(ctx)
        try:
            await member_service.update_profile(ctx.uow, member, {field: convert(ctx.data[field])}, now=ctx.now)
        except Conflict:
            ctx.say("Эту организацию выбрать нельзя: она из другого муниципалитета.")
            return "show"
        ctx.say("Сохранено.")
        return "show"

    return save


def parse_year(low_offset: int, high_offset: int, what: str):
    return year_validator(lambda c: c.now.year - low_offset, lambda c: c.now.year - high_offset, what)


PROFILE = Flow(
    name="profile",
    start="show",
    title="профиль",
    requires="member",
    on_cancel="flow:menu",
    screens=[
        Screen(
            "show",
            text=profile_text,
            on_enter=load_profile,
            buttons=[
                Button("Изменить ФИО", "name", go="name"),
                Button("Изменить место работы", "org", go="org_kind", show_if=is_practitioner),
                Button("Изменить должность", "position", go="position", show_if=is_practitioner),
                Button("Изменить предметную область", "subject", go="subject", show_if=is_practitioner),
                Button("Изменить год начала работы", "start_year", go="start_year", show_if=is_practitioner),
                Button("Изменить год рождения", "birth_year", go="birth_year", show_if=is_practitioner),
                Button("Мои данные и их удаление", "data", go="flow:mydata"),
                Button("В меню", "menu", go="flow:menu"),
            ],
            back=False,
            cancel=False,
        ),
        Screen("name", text="Напишите фамилию, имя и отчество.", input=validate_full_name, save_as="full_name",
               go=saver("full_name"), max_length=100),
        Screen(
            "org_kind",
            text="Где вы работаете?",
            buttons=[Button(label, code, save={"org_kind": code}, go="org") for code, label in T.ORG_KINDS.items()],
        ),
        Screen("org", text="Выберите организацию или напишите часть названия.", choices=organisation_choices,
               searchable=True, save_as="organisation_id", go="position"),
        Screen("position", text="Ваша должность?", choices=position_choices, save_as="position",
               go=lambda ctx: _after_position(ctx)),
        Screen("subject", text="Ваша предметная область?",
               choices=fixed(T.SUBJECT_AREAS, exclude=("preschool", "additional")), save_as="subject_area",
               go=saver("subject_area"), per_page=9),
        Screen("start_year", text="В каком году вы начали работать педагогом? Напишите год.",
               input=parse_year(60, 0, "Год начала работы"), save_as="teaching_start_year",
               go=saver("teaching_start_year"), max_length=10),
        Screen("birth_year", text="Ваш год рождения? Четыре цифры.", input=parse_year(80, 17, "Год рождения"),
               save_as="birth_year", go=saver("birth_year"), max_length=10),
    ],
)


async def _after_position(ctx: Ctx) -> str:
    """After a new position: save workplace fields together (organisation, position, subject)."""
    member = await member_or_fail(ctx)
    changes = {"position": ctx.data["position"]}
    if ctx.data.get("organisation_id"):
        changes["organisation_id"] = int(ctx.data["organisation_id"])
    kind = ctx.data.get("org_kind")
    if kind in ("preschool", "additional"):
        changes["subject_area"] = kind
    try:
        await member_service.update_profile(ctx.uow, member, changes, now=ctx.now)
    except Conflict:
        ctx.say("Эту организацию выбрать нельзя: она из другого муниципалитета.")
        return "show"
    if kind == "school" and ctx.data.get("organisation_id") and member.subject_area in ("preschool", "additional", None):
        return "subject"
    ctx.say("Сохранено.")
    return "show"


# ---- coordinator: confirm mentors -------------------------------------------------------------


async def pending_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    actor = await member_or_fail(ctx)
    mentors = await member_service.pending_mentors(ctx.uow, actor)
    return [
        Choice(str(m.id), f"{m.full_name}, {m.organisation.name if m.organisation else '—'}") for m in mentors
    ]


async def pending_text(ctx: Ctx) -> str:
    if not await pending_choices(ctx, None):
        return "Нет наставников, ждущих подтверждения."
    return "Наставники, ждущие подтверждения. Выберите, чтобы подтвердить или отклонить."


async def mentor_card(ctx: Ctx) -> str:
    mentor = await ctx.uow.members.get(int(ctx.data["mentor_id"]))
    if mentor is None:
        return "Эта запись больше не существует."
    return "\n".join([
        f"{mentor.full_name}",
        f"Организация: {mentor.organisation.name if mentor.organisation else '—'}",
        f"Предметная область: {T.SUBJECT_AREAS.get(mentor.subject_area or '', '—')}",
        f"Начало работы: {mentor.teaching_start_year or '—'}",
        "Подтвердить роль наставника?",
    ])


def decide(approve: bool):
    async def action(ctx: Ctx) -> str:
        actor = await member_or_fail(ctx)
        try:
            mentor = await member_service.decide_mentor(
                ctx.uow, actor, int(ctx.data["mentor_id"]), approve=approve, now=ctx.now
            )
        except (Conflict, NotFound):
            ctx.say("Решение по этому наставнику уже принято.")
            return "list"
        except Forbidden:
            ctx.say(T.NO_RIGHTS)
            return "list"
        ctx.say(f"{mentor.full_name}: {'роль наставника подтверждена' if approve else 'заявка отклонена'}.")
        return "list"

    return action


CONFIRM_MENTORS = Flow(
    name="confirm_mentors",
    start="list",
    title="подтверждение наставников",
    requires="member",
    roles=COORDINATORS,
    screens=[
        Screen("list", text=pending_text, choices=pending_choices, save_as="mentor_id", go="card",
               buttons=[Button("В меню", "menu", go="flow:menu")], back=False, cancel=False),
        Screen("card", text=mentor_card, buttons=[
            Button("Подтвердить", "yes", action=decide(True)),
            Button("Отклонить", "no", action=decide(False)),
        ]),
    ],
)

FLOWS = [MAIN_MENU, PROFILE, CONFIRM_MENTORS, HELP_FLOW]

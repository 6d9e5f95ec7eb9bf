"""Registration as a young teacher, a mentor, or (with an invite code) a coordinator or admin."""

from __future__ import annotations

from dialogs.context import Ctx
from dialogs.flows import texts as T
from dialogs.flows.linking import LINK_CODE_BUTTON
from dialogs.flows.common import after_edit, fixed, municipality_id_of, municipality_of, validate_full_name, year_validator
from dialogs.model import Button, Choice, Flow, InputError, Screen
from storage.models import Role
from storage.services import invites as invite_service
from storage.services import members as member_service
from storage.services.cohort import is_young
from storage.services.errors import NotFound

ROLE = "Кто вы в программе?"
ASK_CODE = "Введите код приглашения, который вам выдал администратор."
BAD_CODE = "Код не подошёл: он неверный, уже использован или срок его действия истёк."
TOO_MANY_CODES = "Слишком много неверных попыток. Попробуйте через 15 минут."
ASK_NAME = "Как вас зовут? Напишите фамилию, имя и отчество."
ASK_KIND = "Где вы работаете?"
ASK_ORG = "Выберите вашу организацию из списка или напишите часть названия."
ASK_POSITION = "Ваша должность?"
ASK_SUBJECT = "Ваша предметная область?"
ASK_START_YEAR = "В каком году вы начали работать педагогом? Выберите или напишите год."
ASK_BIRTH_YEAR = "Ваш год рождения? Напишите четыре цифры, например 1998."
EARLIER = "Раньше"
DONE_TEACHER = "Готово, вы зарегистрированы как {cohort}."
DONE_MENTOR = (
    "Готово, вы зарегистрированы как наставник. Координатор методической службы подтвердит вашу роль; "
    "пока можно пользоваться меню."
)
DONE_COORDINATOR = "Готово, вы зарегистрированы: {role}."
SUBJECTS_SCHOOL = ("preschool", "additional")


async def organisation_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    municipality_id = await municipality_id_of(ctx)
    if municipality_id is None:
        return []
    rows = await ctx.uow.reference.organisations(municipality_id, kind=ctx.data.get("org_kind"), query=query)
    return [Choice(str(row.id), row.name) for row in rows]


async def position_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    positions = T.POSITIONS.get(ctx.data.get("org_kind", "school"), T.POSITIONS["school"])
    return [Choice(code, label) for code, label in positions.items()]


async def start_year_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    year = ctx.now.year
    return [Choice(str(y), str(y)) for y in range(year, year - 6, -1)]


def after_position(ctx: Ctx) -> str:
    kind = ctx.data.get("org_kind")
    if kind in ("preschool", "additional"):
        ctx.data["subject_area"] = kind
        return after_edit("start_year")(ctx)
    return "subject"


def after_name(ctx: Ctx) -> str:
    if ctx.data.get("role") in (Role.COORDINATOR, Role.REGIONAL, Role.ADMIN):
        return "review"
    return after_edit("org_kind")(ctx)


async def check_code(text: str, ctx: Ctx) -> str:
    try:
        invite = await invite_service.check_invite(ctx.uow, ctx.who, text, now=ctx.now)
    except invite_service.TooManyAttempts:
        raise InputError(TOO_MANY_CODES) from None
    except NotFound:
        raise InputError(BAD_CODE) from None
    ctx.data["role"] = invite.role
    ctx.data["invite_id"] = invite.id
    if invite.municipality_id is not None:
        ctx.data["_muni"] = invite.municipality_id
    return "ok"


def parse_start_year(text: str, ctx: Ctx) -> int:
    return year_validator(lambda c: c.now.year - 60, lambda c: c.now.year, "Год начала работы")(text, ctx)


def parse_birth_year(text: str, ctx: Ctx) -> int:
    year = year_validator(lambda c: c.now.year - 80, lambda c: c.now.year - 17, "Год рождения")(text, ctx)
    start = ctx.data.get("teaching_start_year")
    if start is not None and int(start) - year < 16:
        raise InputError("Год рождения не сходится с годом начала работы. Проверьте, пожалуйста.")
    return year


def pick_start_year(ctx: Ctx) -> str:
    ctx.data["teaching_start_year"] = int(ctx.data["teaching_start_year"])
    return after_edit("birth_year")(ctx)


async def review_text(ctx: Ctx) -> str:
    data = ctx.data
    role = data.get("role", Role.TEACHER)
    lines = ["Проверьте, всё ли верно:", "", f"ФИО: {data.get('full_name', '—')}"]
    municipality = await municipality_of(ctx)
    if municipality is not None:
        lines.append(f"Муниципалитет: {municipality.name}")
    if role in (Role.TEACHER, Role.MENTOR):
        organisation = None
        if data.get("organisation_id"):
            organisation = await ctx.uow.reference.organisation(int(data["organisation_id"]))
        kind = data.get("org_kind", "school")
        lines += [
            f"Организация: {organisation.name if organisation else '—'}",
            f"Должность: {T.POSITIONS.get(kind, {}).get(data.get('position', ''), '—')}",
            f"Предметная область: {T.SUBJECT_AREAS.get(data.get('subject_area', ''), '—')}",
            f"Начало педагогической работы: {data.get('teaching_start_year', '—')}",
            f"Год рождения: {data.get('birth_year', '—')}",
        ]
    lines.append(f"Роль: {T.ROLES.get(role, role)}")
    return "\n".join(lines)


async def register(ctx: Ctx) -> str:
    data = ctx.data
    role = data.get("role", Role.TEACHER)
    municipality = await municipality_of(ctx)
    member = await member_service.register_member(
        ctx.uow,
        ctx.who,
        role=role,
        full_name=data["full_name"],
        municipality_id=municipality.id if municipality else None,
        now=ctx.now,
        organisation_id=int(data["organisation_id"]) if data.get("organisation_id") else None,
        position=data.get("position"),
        subject_area=data.get("subject_area"),
        teaching_start_year=data.get("teaching_start_year"),
        birth_year=data.get("birth_year"),
    )
    if data.get("invite_id"):
        await invite_service.use_invite(ctx.uow, int(data["invite_id"]), member.id, now=ctx.now)
    ctx.forget_cached()
    if role == Role.TEACHER:
        young = municipality is not None and is_young(
            teaching_start_year=member.teaching_start_year,
            birth_year=member.birth_year,
            today=ctx.now.date(),
            max_experience_years=municipality.young_max_experience_years,
            max_age=municipality.young_max_age,
        )
        ctx.say(DONE_TEACHER.format(cohort=T.ROLES["teacher" if young else "beginner"]))
    elif role == Role.MENTOR:
        ctx.say(DONE_MENTOR)
    else:
        ctx.say(DONE_COORDINATOR.format(role=T.ROLES.get(role, role)))
    return "flow:menu"


def edit(field_screen: str):
    """A review-screen button action: fix one field, then come back to the review."""

    async def action(ctx: Ctx) -> str:
        ctx.data["_return_to"] = "review"
        return field_screen

    return action


async def already_registered(ctx: Ctx) -> str | None:
    if await ctx.member() is not None:
        return "flow:menu"
    return None


REGISTRATION = Flow(
    name="registration",
    start="role",
    title="регистрацию",
    requires="consent",
    sticky=True,
    on_cancel="flow:public",
    screens=[
        Screen(
            "role",
            text=ROLE,
            on_enter=already_registered,
            buttons=[
                Button("Молодой (начинающий) педагог", "teacher", save={"role": Role.TEACHER}, go="name"),
                Button("Наставник", "mentor", save={"role": Role.MENTOR}, go="name"),
                Button("У меня есть код приглашения", "invite", go="invite"),
                LINK_CODE_BUTTON,
            ],
        ),
        Screen("invite", text=ASK_CODE, input=check_code, go="name", max_length=40),
        Screen("name", text=ASK_NAME, input=validate_full_name, save_as="full_name", go=after_name, max_length=100),
        Screen(
            "org_kind",
            text=ASK_KIND,
            buttons=[Button(label, code, save={"org_kind": code}, go="org") for code, label in T.ORG_KINDS.items()],
        ),
        Screen(
            "org", text=ASK_ORG, choices=organisation_choices, searchable=True, save_as="organisation_id", go="position"
        ),
        Screen("position", text=ASK_POSITION, choices=position_choices, save_as="position", go=after_position),
        Screen(
            "subject",
            text=ASK_SUBJECT,
            choices=fixed(T.SUBJECT_AREAS, exclude=SUBJECTS_SCHOOL),
            save_as="subject_area",
            go=after_edit("start_year"),
            per_page=9,
        ),
        Screen(
            "start_year",
            text=ASK_START_YEAR,
            choices=start_year_choices,
            input=parse_start_year,
            save_as="teaching_start_year",
            go=pick_start_year,
        ),
        Screen("birth_year", text=ASK_BIRTH_YEAR, input=parse_birth_year, save_as="birth_year", go=after_edit("review"), max_length=10),
        Screen(
            "review",
            text=review_text,
            buttons=[
                Button("Всё верно", "ok", action=register),
                Button("Исправить ФИО", "fix_name", action=edit("name")),
                Button("Исправить место работы", "fix_org", action=edit("org_kind"),
                       show_if=lambda ctx: ctx.data.get("role") in (Role.TEACHER, Role.MENTOR)),
                Button("Исправить годы", "fix_years", action=edit("start_year"),
                       show_if=lambda ctx: ctx.data.get("role") in (Role.TEACHER, Role.MENTOR)),
            ],
        ),
    ],
)

FLOWS = [REGISTRATION]

"""Mentoring: asking for a mentor, the mentor's profile and answers, logging meetings, matching.

Flows:
* `mentee` («🤝 Наставник», teachers): ask for a mentor, see the pair, confirm meetings, message
  the mentor, private exclusions;
* `mentoring` («👥 Мои наставляемые», confirmed mentors): pairs and their history, corrections,
  messages; `mentor_proposals`: accept or decline what the coordinator approved;
* `meeting_log` («🗓 Записать встречу»): a meeting in a few taps (also used to correct one);
* `mentor_profile`: strengths, capacity, network mentoring, contacts to share;
* `matching` («🧩 Подбор наставников», coordinators): run matching, approve/reject/change
  proposals, pair by hand, end or reassign pairs.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from dialogs.context import Ctx
from dialogs.flows import texts as T
from dialogs.flows.common import MenuItem, fixed, menu_item
from dialogs.model import Button, Choice, Flow, InputError, Screen
from storage.models import Member, Role
from storage.services import matching
from storage.services import mentoring as svc
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.services.members import require_coordinator

TEACHERS = frozenset({Role.TEACHER})
MENTORS = frozenset({Role.MENTOR})
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})

menu_item(MenuItem("mentee", "🤝 Наставник", "flow:mentee", TEACHERS, order=20))
menu_item(MenuItem("my_mentees", "👥 Мои наставляемые", "flow:mentoring", MENTORS, order=20,
                   visible=lambda member: member.mentor_confirmed))
menu_item(MenuItem("log_meeting", "🗓 Записать встречу", "flow:meeting_log", MENTORS, order=21,
                   visible=lambda member: member.mentor_confirmed))
menu_item(MenuItem("mentor_profile", "🧑‍🏫 Профиль наставника", "flow:mentor_profile", MENTORS, order=22))
menu_item(MenuItem("matching", "🧩 Подбор наставников", "flow:matching", COORDINATORS, order=31))

# ---- labels ---------------------------------------------------------------------------------

CATEGORIES = {"highest": "Высшая", "first": "Первая", "none": "Нет категории"}
FORMATS = {"in_school": "Очно, в ОУ", "away": "Очно, выездное", "online": "Онлайн"}
ACTIVITIES = {
    "consultation": "Консультация",
    "lesson_visit": "Посещение урока",
    "open_lesson": "Открытый урок наставника",
    "joint_planning": "Совместное планирование",
    "master_class": "Мастер-класс",
    "contest_prep": "Подготовка к конкурсу",
    "iom": "ИОМ (план развития)",
    "other": "Другое",
}
END_REASONS = {"goals_met": "Цели достигнуты", "participants": "По просьбе участников", "other": "Другая причина"}
CONFIRM_MARKS = {"pending": "⏳", "yes": "✅", "no": "❌"}
DURATIONS = (15, 30, 45, 60, 90)
NONE = "none"
DEFICIT_CHOICES = {**T.DEFICIT_GROUPS, NONE: "Пока не знаю"}
MEETING_DEFICIT_CHOICES = {**T.DEFICIT_GROUPS, NONE: "Без привязки к дефицитам"}
HELP_CHOICES = {**T.HELP_DIRECTIONS, NONE: "Не выделяю"}

REASONS = {"same_school": "одна школа", "network": "сетевое наставничество", "same_subject": "один предмет"}
DEFICIT_WORDS = {
    "subject": "предметные",
    "methodical": "методические",
    "psychological": "психолого-педагогические",
    "communicative": "коммуникативные",
    "ict": "цифровые (ИКТ)",
    "selforg": "самоорганизация",
}

CONFLICTS = {
    svc.MENTOR_FULL: "У наставника уже нет свободных мест.",
    svc.MENTEE_PAIRED: "У этого педагога уже есть наставник.",
    svc.PROPOSAL_WITHDRAWN: "Это предложение уже отозвано координатором.",
    svc.PROPOSAL_ANSWERED: "На это предложение уже ответили.",
    svc.PROPOSAL_NOT_PENDING: "Это предложение уже рассмотрено.",
    svc.PROPOSAL_NOT_APPROVED: "Это предложение ещё не одобрено координатором.",
    svc.PAIR_ENDED: "Эта пара уже завершена.",
    svc.NO_ACTIVE_PAIR: "У педагога сейчас нет наставника.",
    svc.SAME_MENTOR: "Это тот же наставник.",
    svc.EXCLUDED: "Эту пару создать нельзя.",
    svc.NO_NETWORK: "Этот наставник берёт наставляемых только из своей организации.",
    svc.NOT_A_MENTEE: "Этот участник не молодой педагог.",
    svc.NOT_A_MENTOR: "Этот участник не подтверждённый наставник.",
    svc.MEETING_IN_FUTURE: "Эта дата ещё не наступила: запишите встречу, когда она пройдёт.",
    svc.MEETING_BEFORE_PAIR: "Эта дата раньше начала пары. Проверьте дату.",
    svc.EDIT_WINDOW_PASSED: "Запись можно исправить или удалить только в течение 7 дней.",
    svc.ALREADY_CONFIRMED: "Вы уже ответили по этой встрече.",
}
STALE = "Это действие уже неактуально."


def conflict_text(error: Exception) -> str:
    """The clear answer to a stale or conflicting action."""
    if isinstance(error, Conflict):
        return CONFLICTS.get(str(error), STALE)
    if isinstance(error, Forbidden):
        return T.NO_RIGHTS
    return STALE


def render_reasons(reasons: list[str] | tuple[str, ...], org_kind: str | None = "school") -> str:
    """Reason codes of a proposal in Russian: «одна школа, один предмет, методические дефициты»."""
    parts = []
    for code in reasons:
        if code == "same_school":
            parts.append(REASONS[code] if org_kind in (None, "school") else "одна организация")
        elif code in REASONS:
            parts.append(REASONS[code])
    groups = [code.removeprefix("deficit:") for code in reasons if code.startswith("deficit:")]
    words = [DEFICIT_WORDS.get(group, group) for group in groups]
    if len(groups) == 1 and groups[0] != "selforg":
        parts.append(f"{words[0]} дефициты")
    elif groups:
        parts.append("дефициты: " + ", ".join(words))
    if "same_kind" in reasons and "same_school" not in reasons:
        parts.append("один тип организации")
    for code in reasons:
        if code.startswith("load:"):
            parts.append(f"у наставника уже наставляемых: {code.removeprefix('load:')}")
    return ", ".join(parts) or "—"


def short_name(member: Member | None) -> str:
    """«Иванова М. П.» for lists."""
    if member is None:
        return "—"
    surname, *rest = member.full_name.split()
    return " ".join([surname, *(f"{part[0]}." for part in rest)])


def org_of(member: Member | None) -> str:
    return member.organisation.name if member is not None and member.organisation else "—"


def day(value: date) -> str:
    return value.strftime("%d.%m.%Y")


def on(moment, member: Member) -> str:
    """A stored moment as a date in the member's municipality."""
    return day(svc.local_date(moment, member.municipality))


def meeting_line(meeting) -> str:
    return (
        f"{day(meeting.held_on)} · {ACTIVITIES.get(meeting.activity, meeting.activity)} · "
        f"{meeting.duration_min} мин · {CONFIRM_MARKS.get(meeting.confirmed, '')}"
    )


def history_lines(meetings, limit: int = 15) -> list[str]:
    if not meetings:
        return ["Встреч пока не записано."]
    lines = [f"Встречи ({len(meetings)}; ✅ подтверждена, ⏳ ждёт подтверждения, ❌ не состоялась):"]
    lines += [f"• {meeting_line(meeting)}" for meeting in meetings[:limit]]
    if len(meetings) > limit:
        lines.append(f"…и ещё {len(meetings) - limit}")
    return lines


async def me(ctx: Ctx) -> Member:
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


async def member_by_id(ctx: Ctx, member_id: int) -> Member | None:
    return await ctx.uow.members.get(int(member_id))


def parse_phone(text: str, _ctx: Ctx) -> str:
    """A phone number: digits with optional +, spaces, dashes and brackets, 10 to 15 digits."""
    cleaned = text.strip()
    digits = re.sub(r"\D", "", cleaned)
    if not re.fullmatch(r"[\d+()\- ]+", cleaned) or not 10 <= len(digits) <= 15:
        raise InputError("Напишите номер телефона цифрами, например +7 900 123-45-67, или нажмите «Не указывать».")
    return cleaned


def parse_note(text: str, _ctx: Ctx) -> str:
    return text.strip()


def chosen(values, *, drop=NONE) -> list[str]:
    return [value for value in values or [] if value != drop]


# ---- exclusions (shared by the mentee's and the mentor's flows) -----------------------------

EXCLUSIONS_TEXT = (
    "Здесь можно указать людей, с которыми вас не нужно объединять в пару. Об этом никто не узнает, "
    "в том числе они сами."
)


async def exclusions_text(ctx: Ctx) -> str:
    excluded = await svc.exclusions_of(ctx.uow, await me(ctx))
    if not excluded:
        return EXCLUSIONS_TEXT + "\n\nСейчас список пуст."
    return EXCLUSIONS_TEXT + "\n\nНажмите на имя, чтобы убрать его из списка."


async def exclusion_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(str(m.id), f"✖ {m.full_name}") for m in await svc.exclusions_of(ctx.uow, await me(ctx))]


async def exclusion_candidates(ctx: Ctx, query: str | None) -> list[Choice]:
    return [
        Choice(str(m.id), f"{m.full_name}, {org_of(m)}")
        for m in await svc.exclusion_candidates(ctx.uow, await me(ctx), query)
    ]


async def drop_exclusion(ctx: Ctx) -> str:
    await svc.remove_exclusion(ctx.uow, await me(ctx), int(ctx.data.pop("excl_id")))
    ctx.say("Убрано из списка.")
    return "exclusions"


async def add_exclusion(ctx: Ctx) -> str:
    try:
        await svc.add_exclusion(ctx.uow, await me(ctx), int(ctx.data.pop("excl_add_id")), now=ctx.now)
    except (Forbidden, NotFound):
        ctx.say(STALE)
        return "exclusions"
    ctx.say("Добавлено. Этого человека вам не предложат.")
    return "exclusions"


def exclusion_screens() -> list[Screen]:
    return [
        Screen("exclusions", text=exclusions_text, choices=exclusion_choices, save_as="excl_id", go=drop_exclusion,
               buttons=[Button("Добавить", "add", go="excl_add")]),
        Screen("excl_add", text="Напишите часть фамилии (не меньше 3 букв).", choices=exclusion_candidates,
               searchable=True, save_as="excl_add_id", go=add_exclusion),
    ]


# ---- mentee ---------------------------------------------------------------------------------


async def load_mentee(ctx: Ctx) -> None:
    member = await me(ctx)
    pair = await svc.active_pair_of_mentee(ctx.uow, member.id)
    request = await svc.open_request(ctx.uow, member.id)
    ctx.data["pair_id"] = pair.id if pair else None
    ctx.data["has_request"] = request is not None
    return None


async def mentee_text(ctx: Ctx) -> str:
    member = await me(ctx)
    if ctx.data.get("pair_id"):
        pair = await svc.get_pair(ctx.uow, member, int(ctx.data["pair_id"]))
        mentor = await member_by_id(ctx, pair.mentor_id)
        meetings = await svc.pair_history(ctx.uow, member, pair.id)
        waiting = sum(1 for m in meetings if m.confirmed == svc.PENDING)
        lines = [f"Ваш наставник: {mentor.full_name}, {org_of(mentor)}.", f"Пара с {on(pair.started_at, member)}.",
                 f"Встреч записано: {len(meetings)}."]
        if waiting:
            lines.append(f"Ждут вашего подтверждения: {waiting}.")
        return "\n".join(lines)
    if ctx.data.get("has_request"):
        request = await svc.open_request(ctx.uow, member.id)
        return (f"Вы попросили наставника {on(request.created_at, member)}. Координатор подбирает пару; "
                "я напишу, когда наставник согласится.")
    return ("Наставник — опытный педагог, который поможет освоиться: консультации, посещение уроков, "
            "совместное планирование. Координатор подберёт наставника с учётом вашей школы, предмета "
            "и того, в чём нужна помощь.")


def has_pair(ctx: Ctx) -> bool:
    return bool(ctx.data.get("pair_id"))


def may_ask(ctx: Ctx) -> bool:
    return not ctx.data.get("pair_id") and not ctx.data.get("has_request")


async def prefill_request(ctx: Ctx) -> None:
    request = await svc.open_request(ctx.uow, (await me(ctx)).id)
    if request is not None:
        ctx.data["deficits"] = list(request.deficit_groups) or [NONE]
    return None


async def submit_request(ctx: Ctx) -> str:
    try:
        await svc.ask_for_mentor(
            ctx.uow, await me(ctx), deficit_groups=chosen(ctx.data.get("deficits")),
            share_link=bool(ctx.data.get("share_link")), contact_phone=ctx.data.get("phone"), now=ctx.now,
        )
    except Conflict as error:
        ctx.say(conflict_text(error))
        return "home"
    ctx.say("Запрос принят. Координатор подберёт наставника; я напишу, когда наставник согласится.")
    return "home"


async def cancel_request(ctx: Ctx) -> str:
    await svc.cancel_request(ctx.uow, await me(ctx), now=ctx.now)
    ctx.say("Запрос отменён.")
    return "home"


async def unconfirmed_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(str(m.id), meeting_line(m)) for m in await svc.unconfirmed_meetings(ctx.uow, await me(ctx))]


async def unconfirmed_text(ctx: Ctx) -> str:
    if not await svc.unconfirmed_meetings(ctx.uow, await me(ctx)):
        return "Нет встреч, ждущих подтверждения."
    return "Наставник записал эти встречи. Выберите встречу, чтобы подтвердить её."


async def meeting_text(ctx: Ctx) -> str:
    meeting = await _meeting(ctx)
    if meeting is None:
        return "Этой записи больше нет."
    lines = [
        f"Дата: {day(meeting.held_on)}",
        f"Длительность: {meeting.duration_min} мин",
        f"Формат: {FORMATS.get(meeting.format, meeting.format)}",
        f"Вид работы: {ACTIVITIES.get(meeting.activity, meeting.activity)}",
        "Дефициты: " + (", ".join(T.DEFICIT_GROUPS.get(g, g) for g in meeting.deficits) or "—"),
    ]
    if meeting.note:
        lines.append(f"Итог и следующий шаг: {meeting.note}")
    return "\n".join(lines)


async def _meeting(ctx: Ctx):
    from storage.models_mentoring import MentorMeeting

    meeting_id = ctx.data.get("meeting_id")
    return await ctx.uow.session.get(MentorMeeting, int(meeting_id)) if meeting_id else None


def confirm(happened: bool):
    async def action(ctx: Ctx) -> str:
        try:
            await svc.confirm_meeting(ctx.uow, await me(ctx), int(ctx.data["meeting_id"]), happened=happened,
                                      now=ctx.now)
        except (Conflict, NotFound) as error:
            ctx.say(conflict_text(error))
            return "meetings"
        ctx.say("Спасибо, отмечено." if happened else "Отмечено: встречи не было. Наставник получит уведомление.")
        return "meetings"

    return action


async def mentee_history_text(ctx: Ctx) -> str:
    member = await me(ctx)
    pairs = await svc.pairs_of(ctx.uow, member)
    if not pairs:
        return "Истории пока нет."
    lines = []
    for pair in pairs:
        mentor = await member_by_id(ctx, pair.mentor_id)
        status = "сейчас" if pair.ended_at is None else f"до {on(pair.ended_at, member)}"
        lines += [f"Наставник {mentor.full_name} (с {on(pair.started_at, member)}, {status})",
                  *history_lines(await svc.pair_history(ctx.uow, member, pair.id)), ""]
    return "\n".join(lines).strip()


def send_message(back: str):
    """Pass the typed message to the other member of the pair, then return to `back`."""

    async def action(ctx: Ctx) -> str:
        try:
            await svc.send_pair_message(ctx.uow, await me(ctx), int(ctx.data["pair_id"]), ctx.data.pop("message"),
                                        now=ctx.now)
        except (Conflict, NotFound) as error:
            ctx.say(conflict_text(error))
            return back
        ctx.say("Сообщение отправлено.")
        return back

    return action


MENTEE = Flow(
    name="mentee",
    start="home",
    title="наставник",
    requires="member",
    roles=TEACHERS,
    screens=[
        Screen(
            "home",
            text=mentee_text,
            on_enter=load_mentee,
            buttons=[
                Button("Попросить наставника", "ask", go="ask_deficits", show_if=may_ask),
                Button("Изменить запрос", "edit", action=prefill_request, go="ask_deficits",
                       show_if=lambda ctx: bool(ctx.data.get("has_request"))),
                Button("Отменить запрос", "cancel_req", action=cancel_request,
                       show_if=lambda ctx: bool(ctx.data.get("has_request"))),
                Button("Подтвердить встречи", "confirm", go="meetings", show_if=has_pair),
                Button("История встреч", "history", go="history"),
                Button("✉️ Написать наставнику", "write", go="message", show_if=has_pair),
                Button("Не предлагать мне…", "exclude", go="exclusions"),
                Button("В меню", "menu", go="flow:menu"),
            ],
            back=False,
            cancel=False,
        ),
        Screen("ask_deficits", text="В чём вам больше всего нужна помощь? Отметьте и нажмите «Готово».",
               choices=fixed(DEFICIT_CHOICES), multi=True, exclusive=frozenset({NONE}), save_as="deficits",
               go="ask_link"),
        Screen("ask_link", text="Можно ли передать наставнику ссылку на ваш профиль в Telegram или ВКонтакте?",
               buttons=[Button("Да", "yes", save={"share_link": True}, go="ask_phone"),
                        Button("Нет", "no", save={"share_link": False}, go="ask_phone")]),
        Screen("ask_phone", text="Если хотите, напишите телефон для наставника.", input=parse_phone, save_as="phone",
               go=submit_request, max_length=32,
               buttons=[Button("Не указывать", "skip", save={"phone": None}, action=submit_request)]),
        Screen("meetings", text=unconfirmed_text, choices=unconfirmed_choices, save_as="meeting_id", go="meeting"),
        Screen("meeting", text=meeting_text, buttons=[
            Button("✅ Встреча была", "yes", action=confirm(True)),
            Button("❌ Встречи не было", "no", action=confirm(False)),
        ]),
        Screen("history", text=mentee_history_text),
        Screen("message", text="Напишите сообщение наставнику: я передам его.", input=parse_note,
               save_as="message", go=send_message("home")),
        *exclusion_screens(),
    ],
)


# ---- mentor: pairs, history, corrections ------------------------------------------------------


async def load_mentor(ctx: Ctx) -> None:
    mentor = await me(ctx)
    ctx.data["n_props"] = len(await svc.proposals_for_mentor(ctx.uow, mentor))
    return None


async def mentor_list_text(ctx: Ctx) -> str:
    mentor = await me(ctx)
    pairs = await svc.pairs_of(ctx.uow, mentor)
    lines = []
    if ctx.data.get("n_props"):
        lines.append(f"Новые предложения от координатора: {ctx.data['n_props']}.")
    if not pairs:
        lines.append("Пока нет наставляемых.")
        profile = await svc.mentor_profile(ctx.uow, mentor.id)
        if profile is None:
            lines.append("Заполните профиль наставника, чтобы координатор мог подобрать вам наставляемых.")
    else:
        lines.append("Ваши наставляемые. Выберите, чтобы открыть историю встреч.")
    return "\n".join(lines)


async def pair_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    items = []
    for pair in await svc.pairs_of(ctx.uow, await me(ctx)):
        mentee = await member_by_id(ctx, pair.mentee_id)
        suffix = "" if pair.ended_at is None else " (завершена)"
        items.append(Choice(str(pair.id), f"{mentee.full_name}{suffix}"))
    return items


async def load_pair(ctx: Ctx) -> None:
    try:
        pair = await svc.get_pair(ctx.uow, await me(ctx), int(ctx.data["pair_id"]))
    except (NotFound, Forbidden):
        ctx.say(STALE)
        return "list"
    ctx.data["pair_active"] = pair.ended_at is None
    return None


async def mentor_pair_text(ctx: Ctx) -> str:
    mentor = await me(ctx)
    pair = await svc.get_pair(ctx.uow, mentor, int(ctx.data["pair_id"]))
    mentee = await member_by_id(ctx, pair.mentee_id)
    lines = [
        f"{mentee.full_name}",
        f"Организация: {org_of(mentee)}",
        f"Предметная область: {T.SUBJECT_AREAS.get(mentee.subject_area or '', '—')}",
        f"Пара с {on(pair.started_at, mentor)}" + ("" if pair.ended_at is None else
                                                   f" по {on(pair.ended_at, mentor)} (завершена)"),
        "",
        *history_lines(await svc.pair_history(ctx.uow, mentor, pair.id)),
    ]
    return "\n".join(lines)


def pair_active(ctx: Ctx) -> bool:
    return bool(ctx.data.get("pair_active"))


async def log_for_pair(ctx: Ctx) -> str:
    ctx.data["_pair"] = ctx.data["pair_id"]
    return "flow:meeting_log"


async def entry_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    pair_id = int(ctx.data["pair_id"])
    meetings = await svc.editable_meetings(ctx.uow, await me(ctx), now=ctx.now)
    return [Choice(str(m.id), meeting_line(m)) for m in meetings if m.pair_id == pair_id]


async def entries_text(ctx: Ctx) -> str:
    if not await entry_choices(ctx, None):
        return "Нет записей, которые ещё можно изменить (это возможно 7 дней после записи)."
    return "Какую запись исправить или удалить? (Это можно сделать в течение 7 дней.)"


async def edit_entry(ctx: Ctx) -> str:
    ctx.data["_edit_meeting"] = ctx.data["meeting_id"]
    return "flow:meeting_log"


async def delete_entry(ctx: Ctx) -> str:
    try:
        await svc.delete_meeting(ctx.uow, await me(ctx), int(ctx.data["meeting_id"]), now=ctx.now)
    except (Conflict, NotFound) as error:
        ctx.say(conflict_text(error))
        return "pair"
    ctx.say("Запись удалена.")
    return "pair"


MENTORING = Flow(
    name="mentoring",
    start="list",
    title="мои наставляемые",
    requires="member",
    roles=MENTORS,
    screens=[
        Screen(
            "list",
            text=mentor_list_text,
            on_enter=load_mentor,
            choices=pair_choices,
            save_as="pair_id",
            go="pair",
            buttons=[
                Button("📨 Предложения", "proposals", go="flow:mentor_proposals",
                       show_if=lambda ctx: bool(ctx.data.get("n_props"))),
                Button("🗓 Записать встречу", "log", go="flow:meeting_log"),
                Button("🧑‍🏫 Профиль наставника", "profile", go="flow:mentor_profile"),
                Button("Не предлагать мне…", "exclude", go="exclusions"),
                Button("В меню", "menu", go="flow:menu"),
            ],
            back=False,
            cancel=False,
        ),
        Screen("pair", text=mentor_pair_text, on_enter=load_pair, buttons=[
            Button("🗓 Записать встречу", "log", action=log_for_pair, show_if=pair_active),
            Button("✏️ Исправить или удалить запись", "entries", go="entries", show_if=pair_active),
            Button("✉️ Написать наставляемому", "write", go="message", show_if=pair_active),
            Button("К списку", "list", go="list"),
        ]),
        Screen("entries", text=entries_text, choices=entry_choices, save_as="meeting_id", go="entry"),
        Screen("entry", text=meeting_text, buttons=[
            Button("Исправить", "edit", action=edit_entry),
            Button("Удалить", "delete", go="delete_confirm"),
        ]),
        Screen("delete_confirm", text="Удалить эту запись о встрече?", buttons=[
            Button("Да, удалить", "yes", action=delete_entry),
        ]),
        Screen("message", text="Напишите сообщение наставляемому: я передам его.", input=parse_note,
               save_as="message", go=send_message("pair")),
        *exclusion_screens(),
    ],
)


# ---- mentor: proposals ----------------------------------------------------------------------


async def proposal_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    items = []
    for proposal in await svc.proposals_for_mentor(ctx.uow, await me(ctx)):
        mentee = await member_by_id(ctx, proposal.mentee_id)
        items.append(Choice(str(proposal.id), f"{mentee.full_name}, {org_of(mentee)}"))
    return items


async def proposals_text(ctx: Ctx) -> str:
    if not await proposal_choices(ctx, None):
        return "Новых предложений нет."
    return "Координатор предлагает вам наставляемых. Выберите, чтобы посмотреть и ответить."


async def mentor_proposal_text(ctx: Ctx) -> str:
    mentor = await me(ctx)
    try:
        proposal = await svc.get_proposal(ctx.uow, mentor, int(ctx.data["proposal_id"]))
    except (NotFound, Forbidden):
        return STALE
    mentee = await member_by_id(ctx, proposal.mentee_id)
    groups = (await svc.mentee_deficit_groups(ctx.uow, [mentee.id]))[mentee.id]
    kind = mentee.organisation.kind if mentee.organisation else None
    return "\n".join([
        f"{mentee.full_name}",
        f"Организация: {org_of(mentee)}",
        f"Предметная область: {T.SUBJECT_AREAS.get(mentee.subject_area or '', '—')}",
        f"Начало работы: {mentee.teaching_start_year or '—'}",
        "Нужна помощь: " + (", ".join(T.DEFICIT_GROUPS[g] for g in sorted(groups) if g in T.DEFICIT_GROUPS) or "—"),
        f"Почему вы: {render_reasons(proposal.reasons, kind)}",
        "",
        "Возьмёте наставничество?",
    ])


async def accept(ctx: Ctx) -> str:
    try:
        pair = await svc.accept_proposal(ctx.uow, await me(ctx), int(ctx.data["proposal_id"]), now=ctx.now)
    except (Conflict, NotFound) as error:
        ctx.say(conflict_text(error))
        return "list"
    mentee = await member_by_id(ctx, pair.mentee_id)
    ctx.say(f"Пара создана: {mentee.full_name}. Контакты и предложение о первой встрече придут отдельным "
            "сообщением; написать наставляемому можно в «👥 Мои наставляемые».")
    return "flow:mentoring"


async def decline(ctx: Ctx) -> str:
    try:
        await svc.decline_proposal(ctx.uow, await me(ctx), int(ctx.data["proposal_id"]), now=ctx.now,
                                   weights=weights_of(ctx))
    except (Conflict, NotFound) as error:
        ctx.say(conflict_text(error))
        return "list"
    ctx.say("Вы отказались. Координатор подберёт наставляемому другого наставника.")
    return "list"


MENTOR_PROPOSALS = Flow(
    name="mentor_proposals",
    start="list",
    title="предложения наставнику",
    requires="member",
    roles=MENTORS,
    screens=[
        Screen("list", text=proposals_text, choices=proposal_choices, save_as="proposal_id", go="card",
               buttons=[Button("В меню", "menu", go="flow:menu")], back=False, cancel=False),
        Screen("card", text=mentor_proposal_text, buttons=[
            Button("✅ Принять", "accept", action=accept),
            Button("Отказаться", "decline", action=decline),
        ]),
    ],
)


# ---- meeting log ----------------------------------------------------------------------------


async def active_pair_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    items = []
    for pair in await svc.pairs_of(ctx.uow, await me(ctx), active_only=True):
        mentee = await member_by_id(ctx, pair.mentee_id)
        items.append(Choice(str(pair.id), mentee.full_name))
    return items


async def start_log(ctx: Ctx) -> str | None:
    """Pick the pair: given by the caller, the only active one, or asked for."""
    mentor = await me(ctx)
    edit = ctx.data.pop("_edit_meeting", None)
    given = ctx.data.pop("_pair", None)
    if edit is not None:
        from storage.models_mentoring import MentorMeeting

        meeting = await ctx.uow.session.get(MentorMeeting, int(edit))
        if meeting is None or meeting.logged_by != mentor.id:
            ctx.say(STALE)
            return "flow:mentoring"
        ctx.data.update(edit_id=meeting.id, pair_id=str(meeting.pair_id), held_on=meeting.held_on.isoformat(),
                        duration=meeting.duration_min, format=meeting.format, activity=meeting.activity,
                        deficits=list(meeting.deficits) or [NONE], note=meeting.note)
        ctx.say(f"Исправляем запись: {meeting_line(meeting)}")
        return "date"
    if given is not None:
        ctx.data["pair_id"] = str(given)
        return "date"
    pairs = await active_pair_choices(ctx, None)
    if not pairs:
        ctx.say("У вас пока нет действующих пар: записывать встречу не с кем.")
        return "flow:menu"
    if len(pairs) == 1:
        ctx.data["pair_id"] = pairs[0].id
        return "date"
    return None


async def local_today(ctx: Ctx) -> date:
    member = await me(ctx)
    return svc.local_date(ctx.now, member.municipality)


def pick_day(days_ago: int):
    async def action(ctx: Ctx) -> str:
        ctx.data["held_on"] = ((await local_today(ctx)) - timedelta(days=days_ago)).isoformat()
        return "duration"

    return action


async def parse_day(text: str, ctx: Ctx) -> str:
    today = await local_today(ctx)
    match = re.fullmatch(r"(\d{1,2})[./](\d{1,2})(?:[./](\d{2}|\d{4}))?", text.strip())
    if not match:
        raise InputError("Напишите дату так: 25.11 или 25.11.2026.")
    dd, mm, yy = match.groups()
    year = today.year if yy is None else (2000 + int(yy) if len(yy) == 2 else int(yy))
    try:
        value = date(year, int(mm), int(dd))
    except ValueError:
        raise InputError("Такой даты нет. Напишите дату так: 25.11 или 25.11.2026.") from None
    if yy is None and value > today:
        value = value.replace(year=year - 1)
    if value > today:
        raise InputError(CONFLICTS[svc.MEETING_IN_FUTURE])
    return value.isoformat()


def parse_minutes(text: str, _ctx: Ctx) -> int:
    digits = text.strip().removesuffix("мин").strip()
    if not digits.isdigit() or not svc.MIN_DURATION <= int(digits) <= svc.MAX_DURATION:
        raise InputError(f"Напишите длительность в минутах: от {svc.MIN_DURATION} до {svc.MAX_DURATION}.")
    return int(digits)


async def save_meeting(ctx: Ctx) -> str:
    mentor = await me(ctx)
    fields = dict(
        held_on=date.fromisoformat(ctx.data["held_on"]), duration_min=int(ctx.data["duration"]),
        format=ctx.data["format"], activity=ctx.data["activity"], deficits=chosen(ctx.data.get("deficits")),
        note=ctx.data.get("note") or None,
    )
    try:
        if ctx.data.get("edit_id"):
            meeting = await svc.correct_meeting(ctx.uow, mentor, int(ctx.data["edit_id"]), now=ctx.now, **fields)
        else:
            meeting = await svc.log_meeting(ctx.uow, mentor, int(ctx.data["pair_id"]), now=ctx.now, **fields)
    except (Conflict, NotFound) as error:
        ctx.say(conflict_text(error))
        if isinstance(error, Conflict) and str(error) in (svc.MEETING_IN_FUTURE, svc.MEETING_BEFORE_PAIR):
            return "date"
        return "flow:mentoring"
    ctx.say(f"Встреча записана: {meeting_line(meeting)}\nНаставляемый получит запрос на подтверждение.")
    return "flow:mentoring"


MEETING_LOG = Flow(
    name="meeting_log",
    start="pair",
    title="запись встречи",
    requires="member",
    roles=MENTORS,
    on_cancel="flow:mentoring",
    screens=[
        Screen("pair", text="С кем была встреча?", on_enter=start_log, choices=active_pair_choices,
               save_as="pair_id", go="date"),
        Screen("date", text="Когда была встреча?", buttons=[
            Button("Сегодня", "today", action=pick_day(0)),
            Button("Вчера", "yesterday", action=pick_day(1)),
            Button("Другая дата", "other", go="date_input"),
        ]),
        Screen("date_input", text="Напишите дату встречи, например 25.11.", input=parse_day, save_as="held_on",
               go="duration", max_length=12),
        Screen("duration", text="Сколько длилась встреча?", buttons=[
            *(Button(f"{minutes} мин", f"m{minutes}", save={"duration": minutes}, go="format")
              for minutes in DURATIONS),
            Button("Другое", "other", go="duration_input"),
        ]),
        Screen("duration_input", text="Напишите длительность в минутах.", input=parse_minutes, save_as="duration",
               go="format", max_length=10),
        Screen("format", text="Формат встречи?", buttons=[
            Button(label, code, save={"format": code}, go="activity") for code, label in FORMATS.items()
        ]),
        Screen("activity", text="Вид работы?", choices=fixed(ACTIVITIES), save_as="activity", go="deficits"),
        Screen("deficits", text="Над какими дефицитами работали? Отметьте и нажмите «Готово».",
               choices=fixed(MEETING_DEFICIT_CHOICES), multi=True, exclusive=frozenset({NONE}),
               save_as="deficits", go="note"),
        Screen("note", text="Коротко: итог встречи и следующий шаг (можно пропустить).", input=parse_note,
               save_as="note", go=save_meeting,
               buttons=[Button("Пропустить", "skip", save={"note": None}, action=save_meeting)]),
    ],
)


# ---- mentor profile -------------------------------------------------------------------------


async def load_profile(ctx: Ctx) -> None:
    profile = await svc.mentor_profile(ctx.uow, (await me(ctx)).id)
    if profile is not None:
        ctx.data.update(
            category=profile.category, strengths=list(profile.strengths),
            help_dirs=list(profile.help_directions) or [NONE], capacity=profile.capacity,
            network=profile.accepts_network, share_link=profile.share_link, phone=profile.contact_phone,
        )
    return None


async def profile_text(ctx: Ctx) -> str:
    mentor = await me(ctx)
    profile = await svc.mentor_profile(ctx.uow, mentor.id)
    if profile is None:
        return ("Профиль наставника не заполнен. Расскажите, в чём вы сильны и скольких наставляемых готовы взять: "
                "по этому координатор подбирает пары.")
    contacts = []
    if profile.share_link:
        contacts.append("ссылка на профиль")
    if profile.contact_phone:
        contacts.append(f"телефон {profile.contact_phone}")
    return "\n".join([
        "Профиль наставника",
        "",
        f"Квалификационная категория: {CATEGORIES.get(profile.category, '—')}",
        "Сильные стороны: " + (", ".join(T.DEFICIT_GROUPS.get(g, g) for g in profile.strengths) or "—"),
        "Направления помощи: " + (", ".join(T.HELP_DIRECTIONS.get(h, h) for h in profile.help_directions) or "—"),
        f"Готов(а) взять наставляемых: {profile.capacity}",
        "Сетевое наставничество (из других школ): " + ("да" if profile.accepts_network else "нет"),
        "Контакты для наставляемого: " + (", ".join(contacts) or "не передавать"),
    ])


async def save_profile(ctx: Ctx) -> str:
    data = ctx.data
    try:
        await svc.save_mentor_profile(
            ctx.uow, await me(ctx), category=data["category"], strengths=chosen(data.get("strengths")),
            help_directions=chosen(data.get("help_dirs")), capacity=int(data["capacity"]),
            accepts_network=bool(data.get("network")), share_link=bool(data.get("share_link")),
            contact_phone=data.get("phone"), now=ctx.now,
        )
    except Forbidden:
        ctx.say(T.NO_RIGHTS)
        return "flow:menu"
    ctx.say("Профиль наставника сохранён.")
    return "show"


MENTOR_PROFILE = Flow(
    name="mentor_profile",
    start="show",
    title="профиль наставника",
    requires="member",
    roles=MENTORS,
    screens=[
        Screen("show", text=profile_text, on_enter=load_profile, buttons=[
            Button("✏️ Заполнить или изменить", "edit", go="category"),
            Button("В меню", "menu", go="flow:menu"),
        ], back=False, cancel=False),
        Screen("category", text="Ваша квалификационная категория?", buttons=[
            Button(label, code, save={"category": code}, go="strengths") for code, label in CATEGORIES.items()
        ]),
        Screen("strengths", text="В чём вы сильны и можете помочь? Отметьте и нажмите «Готово».",
               choices=fixed(T.DEFICIT_GROUPS), multi=True, save_as="strengths", go="help"),
        Screen("help", text="Направления помощи, в которых у вас большой опыт:", choices=fixed(HELP_CHOICES),
               multi=True, exclusive=frozenset({NONE}), save_as="help_dirs", go="capacity", per_page=12),
        Screen("capacity", text="Скольких наставляемых вы готовы взять?", buttons=[
            *(Button(str(n), f"c{n}", save={"capacity": n}, go="network") for n in range(1, 6)),
            Button("Пока ни одного", "c0", save={"capacity": 0}, go="network"),
        ]),
        Screen("network", text="Готовы ли вы брать наставляемых из других школ (сетевое наставничество)?", buttons=[
            Button("Да, и из других школ", "yes", save={"network": True}, go="share_link"),
            Button("Только из своей организации", "no", save={"network": False}, go="share_link"),
        ]),
        Screen("share_link", text="Можно ли передать наставляемому ссылку на ваш профиль в Telegram или ВКонтакте?",
               buttons=[Button("Да", "yes", save={"share_link": True}, go="phone"),
                        Button("Нет", "no", save={"share_link": False}, go="phone")]),
        Screen("phone", text="Если хотите, напишите телефон для наставляемых.", input=parse_phone, save_as="phone",
               go=save_profile, max_length=32,
               buttons=[Button("Не указывать", "skip", save={"phone": None}, action=save_profile)]),
    ],
)


# ---- coordinator: matching ------------------------------------------------------------------


async def coordinator(ctx: Ctx) -> Member:
    actor = await me(ctx)
    require_coordinator(actor, actor.municipality_id)
    return actor


async def load_matching(ctx: Ctx) -> str | None:
    actor = await me(ctx)
    if actor.municipality_id is None:
        ctx.say("Подбор наставников доступен координатору муниципалитета.")
        return "flow:menu"
    return None


async def matching_text(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    s = await svc.summary(ctx.uow, actor, actor.municipality_id, now=ctx.now)
    lines = [
        "Подбор наставников",
        "",
        f"Ждут наставника: {s.waiting}" + (f" (из них больше 7 дней: {s.waiting_long})" if s.waiting_long else ""),
        f"Наставников со свободными местами: {s.mentors_free}",
        f"Предложений ждут вашего решения: {s.proposed}",
        f"Одобрено, ждут ответа наставника: {s.approved}",
        f"Действующих пар: {s.active_pairs}",
    ]
    return "\n".join(lines)


def weights_of(ctx: Ctx) -> matching.MatchWeights:
    """The score weights from the settings (MATCHING__SAME_SCHOOL, ...), or the defaults."""
    configured = getattr(ctx.config, "matching", None)
    return matching.MatchWeights(**configured.model_dump()) if configured is not None else matching.DEFAULT_WEIGHTS


async def run_matching(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    proposals = await svc.run_matching(ctx.uow, actor, actor.municipality_id, now=ctx.now, weights=weights_of(ctx))
    if not proposals:
        ctx.say("Новых пар не найдено: нет ждущих педагогов или подходящих наставников со свободными местами.")
        return "home"
    ctx.say(f"Предложено пар: {len(proposals)}. Проверьте и одобрите их.")
    return "proposals"


async def coordinator_proposal_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    actor = await coordinator(ctx)
    items = []
    for proposal in await svc.proposals_in(ctx.uow, actor, actor.municipality_id):
        mentee, mentor = await member_by_id(ctx, proposal.mentee_id), await member_by_id(ctx, proposal.mentor_id)
        mark = "✳" if proposal.state == svc.PROPOSED else "⏳"
        items.append(Choice(str(proposal.id), f"{mark} {short_name(mentee)} → {short_name(mentor)} ({proposal.score})"))
    return items


async def coordinator_proposals_text(ctx: Ctx) -> str:
    if not await coordinator_proposal_choices(ctx, None):
        return "Предложений нет. Запустите подбор."
    return "Предложения: ✳ ждут вашего решения, ⏳ ждут ответа наставника. В скобках — баллы пары."


async def load_proposal(ctx: Ctx) -> str | None:
    try:
        proposal = await svc.get_proposal(ctx.uow, await coordinator(ctx), int(ctx.data["proposal_id"]))
    except (NotFound, Forbidden):
        ctx.say(STALE)
        return "proposals"
    ctx.data["p_state"] = proposal.state
    ctx.data["mentee_id"] = proposal.mentee_id
    ctx.data["p_mentor"] = proposal.mentor_id
    return None


STATES = {
    svc.PROPOSED: "ждёт вашего решения",
    svc.APPROVED: "одобрено, ждёт ответа наставника",
    svc.REJECTED: "отклонено",
    svc.ACCEPTED: "принято наставником",
    svc.DECLINED: "наставник отказался",
    svc.WITHDRAWN: "отозвано",
}


async def coordinator_proposal_text(ctx: Ctx) -> str:
    proposal = await svc.get_proposal(ctx.uow, await coordinator(ctx), int(ctx.data["proposal_id"]))
    mentee, mentor = await member_by_id(ctx, proposal.mentee_id), await member_by_id(ctx, proposal.mentor_id)
    kind = mentee.organisation.kind if mentee.organisation else None
    return "\n".join([
        f"Наставляемый: {mentee.full_name}, {org_of(mentee)}, "
        f"{T.SUBJECT_AREAS.get(mentee.subject_area or '', '—')}",
        f"Наставник: {mentor.full_name}, {org_of(mentor)}, {T.SUBJECT_AREAS.get(mentor.subject_area or '', '—')}",
        f"Почему: {render_reasons(proposal.reasons, kind)}",
        f"Баллы: {proposal.score}",
        f"Состояние: {STATES.get(proposal.state, proposal.state)}",
    ])


def decision(service, done: str):
    async def action(ctx: Ctx) -> str:
        try:
            await service(ctx.uow, await coordinator(ctx), int(ctx.data["proposal_id"]), now=ctx.now)
        except (Conflict, NotFound, Forbidden) as error:
            ctx.say(conflict_text(error))
            return "proposals"
        ctx.say(done)
        return "proposals"

    return action


def state_is(*states: str):
    return lambda ctx: ctx.data.get("p_state") in states


async def option_choices(ctx: Ctx, _query: str | None, *, eligible_only: bool) -> list[Choice]:
    options = await svc.mentor_options(ctx.uow, await coordinator(ctx), int(ctx.data["mentee_id"]))
    items = []
    for option in options:
        if eligible_only and (option.score is None or option.mentor.id == ctx.data.get("p_mentor")):
            continue
        score = f"{option.score} б." if option.score is not None else "другая школа"
        items.append(Choice(str(option.mentor.id), f"{short_name(option.mentor)}, {org_of(option.mentor)} ({score})"))
    return items


async def change_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    return await option_choices(ctx, query, eligible_only=True)


async def any_mentor_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    return await option_choices(ctx, query, eligible_only=False)


async def change(ctx: Ctx) -> str:
    try:
        await svc.change_proposal(ctx.uow, await coordinator(ctx), int(ctx.data["proposal_id"]),
                                  int(ctx.data.pop("new_mentor_id")), now=ctx.now)
    except (Conflict, NotFound, Forbidden) as error:
        ctx.say(conflict_text(error))
        return "proposals"
    ctx.say("Наставник заменён; новому наставнику отправлено предложение.")
    return "proposals"


async def active_pair_list(ctx: Ctx, _query: str | None) -> list[Choice]:
    actor = await coordinator(ctx)
    items = []
    for pair in await svc.active_pairs_in(ctx.uow, actor, actor.municipality_id):
        mentee, mentor = await member_by_id(ctx, pair.mentee_id), await member_by_id(ctx, pair.mentor_id)
        items.append(Choice(str(pair.id), f"{short_name(mentee)} — {short_name(mentor)}"))
    return items


async def pairs_text(ctx: Ctx) -> str:
    if not await active_pair_list(ctx, None):
        return "Действующих пар нет."
    return "Действующие пары (наставляемый — наставник):"


async def load_coordinator_pair(ctx: Ctx) -> str | None:
    try:
        pair = await svc.get_pair(ctx.uow, await coordinator(ctx), int(ctx.data["pair_id"]))
    except (NotFound, Forbidden):
        ctx.say(STALE)
        return "pairs"
    ctx.data["mentee_id"] = pair.mentee_id
    ctx.data["pair_active"] = pair.ended_at is None
    return None


async def coordinator_pair_text(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    pair = await svc.get_pair(ctx.uow, actor, int(ctx.data["pair_id"]))
    mentee, mentor = await member_by_id(ctx, pair.mentee_id), await member_by_id(ctx, pair.mentor_id)
    status = "действует" if pair.ended_at is None else f"завершена {on(pair.ended_at, actor)}"
    return "\n".join([
        f"Наставляемый: {mentee.full_name}, {org_of(mentee)}",
        f"Наставник: {mentor.full_name}, {org_of(mentor)}",
        f"С {on(pair.started_at, actor)}, {status}",
        "",
        *history_lines(await svc.pair_history(ctx.uow, actor, pair.id)),
    ])


def end_with(reason: str):
    async def action(ctx: Ctx) -> str:
        try:
            await svc.end_pair(ctx.uow, await coordinator(ctx), int(ctx.data["pair_id"]), reason=reason, now=ctx.now)
        except (Conflict, NotFound, Forbidden) as error:
            ctx.say(conflict_text(error))
            return "pairs"
        ctx.say("Пара завершена; участники получат уведомление.")
        return "pairs"

    return action


async def reassign(ctx: Ctx) -> str:
    try:
        await svc.reassign(ctx.uow, await coordinator(ctx), int(ctx.data["mentee_id"]),
                           int(ctx.data.pop("new_mentor_id")), now=ctx.now)
    except (Conflict, NotFound, Forbidden) as error:
        ctx.say(conflict_text(error))
        return "pairs"
    ctx.say("Наставляемый передан другому наставнику.")
    return "pairs"


async def unpaired_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    actor = await coordinator(ctx)
    return [
        Choice(str(m.id), f"{m.full_name}, {org_of(m)}")
        for m in await svc.unpaired_teachers(ctx.uow, actor, actor.municipality_id, query)
    ]


async def by_hand(ctx: Ctx) -> str:
    try:
        await svc.pair_by_hand(ctx.uow, await coordinator(ctx), int(ctx.data["mentee_id"]),
                               int(ctx.data.pop("new_mentor_id")), now=ctx.now)
    except (Conflict, NotFound, Forbidden) as error:
        ctx.say(conflict_text(error))
        return "home"
    ctx.say("Пара создана; участники получат контакты друг друга.")
    return "home"


APPROVED_TEXT = "Одобрено: наставнику отправлено предложение."
REJECTED_TEXT = "Отклонено: эту пару больше не предложат."

MATCHING = Flow(
    name="matching",
    start="home",
    title="подбор наставников",
    requires="member",
    roles=COORDINATORS,
    screens=[
        Screen("home", text=matching_text, on_enter=load_matching, buttons=[
            Button("▶️ Подобрать пары", "run", action=run_matching),
            Button("Предложения", "proposals", go="proposals"),
            Button("Действующие пары", "pairs", go="pairs"),
            Button("Пара вручную", "manual", go="manual_mentee"),
            Button("В меню", "menu", go="flow:menu"),
        ], back=False, cancel=False),
        Screen("proposals", text=coordinator_proposals_text, choices=coordinator_proposal_choices,
               save_as="proposal_id", go="proposal", buttons=[Button("К подбору", "home", go="home")]),
        Screen("proposal", text=coordinator_proposal_text, on_enter=load_proposal, buttons=[
            Button("✅ Одобрить", "approve", action=decision(svc.approve_proposal, APPROVED_TEXT),
                   show_if=state_is(svc.PROPOSED)),
            Button("✖ Отклонить", "reject", action=decision(svc.reject_proposal, REJECTED_TEXT),
                   show_if=state_is(svc.PROPOSED)),
            Button("🔁 Другой наставник", "change", go="change", show_if=state_is(*svc.LIVE)),
            Button("↩ Отозвать", "withdraw", action=decision(svc.withdraw_proposal, "Предложение отозвано."),
                   show_if=state_is(svc.APPROVED)),
        ]),
        Screen("change", text="Выберите другого наставника (в скобках — баллы пары):", choices=change_choices,
               save_as="new_mentor_id", go=change),
        Screen("pairs", text=pairs_text, choices=active_pair_list, save_as="pair_id", go="pair",
               buttons=[Button("К подбору", "home", go="home")]),
        Screen("pair", text=coordinator_pair_text, on_enter=load_coordinator_pair, buttons=[
            Button("Завершить пару", "end", go="end", show_if=pair_active),
            Button("Передать другому наставнику", "reassign", go="reassign", show_if=pair_active),
        ]),
        Screen("end", text="Почему пара завершается?", buttons=[
            Button(label, code, action=end_with(code)) for code, label in END_REASONS.items()
        ]),
        Screen("reassign", text="Кому передать наставляемого?", choices=any_mentor_choices, save_as="new_mentor_id",
               go=reassign),
        Screen("manual_mentee", text="Выберите педагога без наставника или напишите часть фамилии.",
               choices=unpaired_choices, searchable=True, save_as="mentee_id", go="manual_mentor"),
        Screen("manual_mentor", text="Выберите наставника (в скобках — баллы пары):", choices=any_mentor_choices,
               save_as="new_mentor_id", go=by_hand),
    ],
)

FLOWS = [MENTEE, MENTORING, MENTOR_PROPOSALS, MEETING_LOG, MENTOR_PROFILE, MATCHING]

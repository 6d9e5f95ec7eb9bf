"""Reporting a deficit any time («⚠️ Сообщить о затруднении»), and the coordinator's summary of them.

The report asks three ticked lists (competence groups, difficulties from Приложение 3 Q12, help
directions from Приложение 2 Q1) and an optional comment; the monthly nudge opens the same flow.
The summary shows the aggregation service's figures with small cells hidden.
"""

from __future__ import annotations

from datetime import date, timedelta

from dialogs.context import Ctx
from dialogs.flows import texts as T
from dialogs.flows.common import MenuItem, menu_item
from dialogs.model import Button, Choice, Flow, Screen
from storage.models import Role
from storage.services import aggregation as A
from storage.services import surveys as S
from storage.services.cohort import school_year_start
from storage.services.errors import Forbidden

PRACTITIONERS = frozenset({Role.TEACHER, Role.MENTOR})
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})
LABEL_LIMIT = 40

menu_item(MenuItem("deficits", "⚠️ Сообщить о затруднении", "flow:deficits", PRACTITIONERS, order=45))
menu_item(MenuItem("deficit_summary", "📈 Сводка по дефицитам", "flow:deficit_summary", COORDINATORS, order=36))

ASK_GROUPS = (
    "В каких группах компетенций вы сейчас чувствуете нехватку знаний и умений? "
    "Отметьте всё подходящее и нажмите «Готово» (если ничего — просто «Готово»)."
)
ASK_DIFFICULTIES = "Какие трудности вы встречаете в работе? Отметьте и нажмите «Готово»."
ASK_HELP = "В каких направлениях вам нужна методическая помощь? Отметьте и нажмите «Готово»."
ASK_COMMENT = "Хотите что-нибудь добавить своими словами? Напишите сообщение или нажмите «Без комментария»."
NOTHING = "Вы ничего не отметили, поэтому сохранять нечего. Если что-то появится — возвращайтесь."
THANKS = "Спасибо! Методическая служба учтёт это, когда будет планировать семинары и подбирать наставников."
NUDGE_TEXT = (
    "Как идёт работа? Если что-то даётся трудно — отметьте это за минуту: методическая служба "
    "учтёт при планировании помощи."
)
NUDGE_BUTTON = "Сообщить о затруднении"

STEPS = {
    "groups": ("g", T.DEFICIT_GROUPS, ASK_GROUPS),
    "difficulties": ("d", T.DIFFICULTIES, ASK_DIFFICULTIES),
    "help": ("h", T.HELP_DIRECTIONS, ASK_HELP),
}


def _labels(mapping: dict[str, str]) -> dict[str, str]:
    """Button labels; long ones are numbered and listed in full in the text."""
    if all(len(label) <= LABEL_LIMIT - 2 for label in mapping.values()):
        return dict(mapping)
    return {code: _short(f"{index}. {label}") for index, (code, label) in enumerate(mapping.items(), start=1)}


def _short(text: str) -> str:
    return text if len(text) <= LABEL_LIMIT - 2 else text[: LABEL_LIMIT - 3].rstrip() + "…"


def step_text(step: str):
    key, mapping, question = STEPS[step]

    def text(_ctx: Ctx) -> str:
        lines = [question]
        if _labels(mapping) != mapping:
            lines += [""] + [f"{i}. {label}" for i, label in enumerate(mapping.values(), start=1)]
        return "\n".join(lines)

    return text


def step_choices(step: str):
    key, mapping, _question = STEPS[step]
    labels = _labels(mapping)

    async def choices(ctx: Ctx, _query: str | None) -> list[Choice]:
        chosen = set(ctx.data.get(key, []))
        return [Choice(code, f"{T.TICK_ON if code in chosen else T.TICK_OFF} {labels[code]}") for code in mapping]

    return choices


def step_toggle(step: str):
    key, mapping, _question = STEPS[step]

    def toggle(ctx: Ctx) -> str:
        code = ctx.data.pop("pick", None)
        chosen = list(ctx.data.get(key, []))
        if code in chosen:
            chosen.remove(code)
        elif code in mapping:
            chosen.append(code)
        ctx.data[key] = [c for c in mapping if c in chosen]
        return "stay"

    return toggle


async def save_report(ctx: Ctx) -> str:
    member = await ctx.member()
    comment = ctx.data.get("comment")
    try:
        await S.report_deficits(
            ctx.uow, member, now=ctx.now, groups=ctx.data.get("g", []), difficulties=ctx.data.get("d", []),
            help_directions=ctx.data.get("h", []), comment=comment,
        )
    except S.InvalidAnswer:
        ctx.say(NOTHING)
        return "flow:menu"
    ctx.say(THANKS)
    return "flow:menu"


def comment_input(text: str, ctx: Ctx) -> str:
    return text.strip()


def step_screen(step: str, following: str) -> Screen:
    return Screen(
        step, text=step_text(step), choices=step_choices(step), save_as="pick", go=step_toggle(step), per_page=12,
        buttons=[Button(T.DONE, "done", go=following)],
    )


DEFICITS = Flow(
    name="deficits",
    start="groups",
    title="сообщение о затруднении",
    requires="member",
    roles=PRACTITIONERS,
    screens=[
        step_screen("groups", "difficulties"),
        step_screen("difficulties", "help"),
        step_screen("help", "comment"),
        Screen("comment", text=ASK_COMMENT, input=comment_input, save_as="comment", go=save_report,
               max_length=S.COMMENT_MAX_LENGTH,
               buttons=[Button("Без комментария", "none", action=save_report)]),
    ],
)


# ---- coordinator: the summary ---------------------------------------------------------------------

HIDDEN = "скрыто"
SUPPRESSION_NOTE = (
    "Числа меньше 5 человек скрыты, а вместе с ними — числа, из которых скрытое можно вычислить вычитанием."
)
KIND_TITLES = {
    "deficit_group": "Группы дефицитов",
    "difficulty": "Трудности",
    "help_direction": "Нужна помощь по направлениям",
    "need": "В чём нуждаются (анкета)",
}
KIND_LABELS = {
    "deficit_group": T.DEFICIT_GROUPS,
    "difficulty": T.DIFFICULTIES,
    "help_direction": T.HELP_DIRECTIONS,
}
NEED_LABELS = {
    "colleague_contact": "Общение с коллегами",
    "peer_community": "Сообщество молодых учителей",
    "events": "Значимые события",
    "self_expression": "Творческое самовыражение",
    "qualification": "Повышение квалификации",
}
RETENTION_TITLES = {
    "q10": "Удовлетворены своей подготовкой (анкета, вопрос 10)",
    "q11": "Перспективы в профессии (анкета, вопрос 11)",
}
RETENTION_LABELS = {
    "q10": {"partly": "Частично", "yes": "Да", "no": "Нет"},
    "q11": {
        "leave_asap": "Уйдут при первой возможности",
        "may_leave": "Могут уйти",
        "career": "Будут строить карьеру",
        "never_leave": "Не уйдут ни при каких обстоятельствах",
        "other": "Другое",
    },
}
OTHER = "Другое"
SUMMARY_LIMIT = 3900  # a Telegram message holds 4096 characters


def figure(value: A.Figure, *, share: bool = True) -> str:
    """A count with its share, or «скрыто»."""
    if value.count is None:
        return HIDDEN
    if share and value.share is not None:
        return f"{value.count} ({value.share:.0%})"
    return str(value.count)


def label_of(kind: str, code: str) -> str:
    labels = KIND_LABELS.get(kind, NEED_LABELS)
    return labels.get(code, OTHER if code == "other" else code)


def summary_text(summary: A.DeficitSummary, municipality_name: str) -> str:
    """The aggregation as a message: totals, each kind by code, schools, trend, retention."""
    lines = [
        f"Сводка по дефицитам: {municipality_name}",
        f"Период: {summary.start:%d.%m.%Y} – {summary.end:%d.%m.%Y}",
        f"Сообщили о затруднениях: {figure(summary.people, share=False)} чел.",
    ]
    for kind, block in summary.kinds.items():
        if block.overall.respondents.count == 0:
            continue
        lines += ["", f"{KIND_TITLES[kind]} (ответили: {figure(block.overall.respondents, share=False)}):"]
        ranked = sorted(block.overall.codes.items(), key=lambda item: -(item[1].count or 0))
        lines += [f"• {label_of(kind, code)} — {figure(value)}" for code, value in ranked if value.count != 0]
    groups = summary.kinds.get("deficit_group")
    if groups is not None and groups.by_school:
        lines += ["", "Группы дефицитов по школам:"]
        for school_id, split in groups.by_school.items():
            name = summary.school_names.get(school_id, "без организации")
            parts = [f"{label_of('deficit_group', c)} {figure(v, share=False)}" for c, v in split.codes.items()
                     if v.count != 0]
            lines.append(f"• {name} — ответили {figure(split.respondents, share=False)}: " + ", ".join(parts))
    if summary.trend:
        weekly = ", ".join(f"{week.start:%d.%m}: {figure(week.people, share=False)}" for week in summary.trend)
        lines += ["", f"По неделям (сообщивших): {weekly}"]
    for code, block in summary.retention.items():
        if not block.respondents.count:
            continue
        lines += ["", f"{RETENTION_TITLES[code]}, ответили {figure(block.respondents, share=False)}:"]
        lines += [f"• {RETENTION_LABELS[code].get(option, option)} — {figure(value)}"
                  for option, value in block.codes.items()]
    lines += ["", SUPPRESSION_NOTE]
    text = "\n".join(lines)
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def period_of(ctx: Ctx) -> tuple[date, date]:
    """The school year so far, or this week and the three before it (whole weeks, like the trend)."""
    today = ctx.now.date()
    if ctx.data.get("period") == "year":
        return date(school_year_start(today), 9, 1), today
    return today - timedelta(days=today.weekday(), weeks=3), today


async def show_summary(ctx: Ctx) -> str:
    member = await ctx.member()
    start, end = period_of(ctx)
    try:
        summary = await A.deficit_summary(ctx.uow, member, start=start, end=end)
    except Forbidden:
        return T.NO_RIGHTS
    municipality = await ctx.uow.reference.municipality(member.municipality_id)
    return summary_text(summary, municipality.name if municipality else "")


DEFICIT_SUMMARY = Flow(
    name="deficit_summary",
    start="period",
    title="сводку по дефицитам",
    requires="member",
    roles=COORDINATORS,
    screens=[
        Screen("period", text="За какой период показать сводку?", buttons=[
            Button("Последние 4 недели", "weeks", save={"period": "weeks"}, go="show"),
            Button("С начала учебного года", "year", save={"period": "year"}, go="show"),
            Button("В меню", "menu", go="flow:menu"),
        ], back=False, cancel=False),
        Screen("show", text=show_summary, back=False, cancel=False, buttons=[
            Button("Другой период", "period", go="period"),
            Button("В меню", "menu", go="flow:menu"),
        ]),
    ],
)

FLOWS = [DEFICITS, DEFICIT_SUMMARY]


async def queue_deficit_nudges(uow, *, now, quiet=None) -> int:
    """For the scheduler: this month's nudge to every young teacher (idempotent by month); commits nothing."""
    queued = 0
    for municipality in await uow.reference.municipalities():
        queued += await S.deficit_nudges(uow, municipality.id, text=NUDGE_TEXT, button=NUDGE_BUTTON, now=now,
                                         quiet=quiet)
    return queued

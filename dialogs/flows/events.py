"""Events: the calendar (`/events`, «📅 Мероприятия»), the event card with «Иду» / «Не пойду», the
waiting list, .ics files, subscriptions, «Для вас»; the coordinator's create / edit / cancel /
copy; the questions after an event; and a public calendar for people not registered yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dialogs.context import Ctx
from dialogs.engine import Command
from dialogs.flows import texts as T
from dialogs.flows.common import MenuItem, menu_item, municipality_of
from dialogs.model import Button, Choice, Flow, InputError, OutFile, Screen
from dialogs.questionnaires.schema import BUILTIN_DIR, load_questionnaire
from storage.models import Member, Role
from storage.services import events as ev
from storage.services import outbox
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.services.members import require_coordinator

EVERYONE = frozenset(Role)
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})

menu_item(MenuItem("events", "📅 Мероприятия", "flow:events", EVERYONE, order=20))

AUDIENCES = {
    "young_teachers": "молодые педагоги",
    "mentors": "наставники",
    "both": "молодые педагоги и наставники",
    "preschool": "педагоги ДОУ",
}
LABEL_LIMIT = 40  # VK allows 40 characters on a button

LIST_TITLE = "Ближайшие мероприятия ({municipality}). Выберите, чтобы открыть."
NO_EVENTS = "Пока нет запланированных мероприятий. Подпишитесь на интересные виды, и я сообщу о новых."
FOR_YOU_TITLE = (
    "Для вас: сначала мероприятия по тем затруднениям, о которых вы сообщали (отмечены ⭐), затем остальные."
)
FOR_YOU_NO_DEFICITS = (
    "Вы пока не сообщали о профессиональных затруднениях, поэтому показываю все ближайшие мероприятия."
)
SUBS_TEXT = "Отметьте виды мероприятий, о новых событиях которых хотите узнавать, и нажмите «Готово»."
GONE = "Это мероприятие больше недоступно."
REGISTERED = "Вы записаны на «{title}». {reminders}"
WAITLISTED = (
    "Свободных мест нет — вы в листе ожидания (№ {position}). Если место освободится, я запишу вас "
    "автоматически и сообщу."
)
WITHDRAWN = "Запись отменена."
LEFT_WAITLIST = "Вы вышли из листа ожидания."
CLOSED = "Запись на это мероприятие закрыта."
NOT_FOR_YOU = "Это мероприятие не для вашей категории участников."
ICS_TEXT = "Файл для календаря: откройте его, чтобы добавить «{title}» в свой календарь."
PUBLIC_REGISTER = "Записаться на мероприятие можно после регистрации в боте."
CHOOSE_MUNICIPALITY_FIRST = "Сначала выберите муниципалитет — тогда я покажу его календарь."

ASK_TYPE = "Новое мероприятие. Какой это вид?"
ASK_TITLE = "Название мероприятия (как его увидят участники)?"
ASK_START = "Дата и время начала по местному времени, например: {example}"
ASK_END = "Время окончания (например 17:00) или дата и время, если мероприятие длится несколько дней."
ASK_PLACE = "Где проходит? Напишите адрес, или ссылку (https://...) для онлайн-встречи."
ASK_AUDIENCE = "Для кого мероприятие?"
ASK_CAPACITY = "Сколько мест? Напишите число или нажмите «Без ограничений»."
ASK_DEFICITS = "На какие профессиональные дефициты рассчитано? Отметьте и нажмите «Готово»."
ASK_CONTACT = "Контакт организатора (телефон, почта или имя)?"
ASK_COPY_START = "Дата и время начала копии, например: {example}"
CANCEL_CONFIRM = "Отменить «{title}»? Все записавшиеся сразу получат уведомление."
NO_DEFICIT = "Не указывать"

WALL_BUTTON = "📣 Опубликовать на стене ВК"
WALL_QUEUED = "Анонс отправлен на стену сообщества ВКонтакте: он появится там в течение минуты."
WALL_ALREADY = "Анонс этого мероприятия уже отправлен на стену сообщества: второй раз его не публикую."
WALL_SIGN_UP = "Записаться и получить напоминания: напишите сообществу «Начать» — https://vk.me/club{group}"
WALL_KIND = outbox.WALL_KIND  # scheduler/dispatch.py posts outbox rows of this kind on the community wall

FEEDBACK_DONE = "Спасибо за ответы!"
NOTHING_TO_ASK = "Сейчас нет мероприятий, по которым я жду ответа. Спасибо!"
ATTENDED_ASK = "Вы были на мероприятии «{title}» ({when})?"
NOT_ATTENDED = "Понятно, спасибо! Надеюсь, получится в следующий раз."
DEFICIT_ASK = (
    "Мероприятие касалось затруднений, о которых вы сообщали: {groups}. Ощущаются ли они так же сильно, как раньше?"
)
DEFICIT_OPTIONS = {"same": "Да, так же сильно", "weaker": "Стало легче", "gone": "Уже не ощущаются"}

FEEDBACK_FORM = load_questionnaire(BUILTIN_DIR / "event_feedback.yaml")
SCALE_QUESTIONS = [q for q in FEEDBACK_FORM.questions if q.code in ev.FEEDBACK_QUESTIONS]
COMMENT_QUESTION = next(q for q in FEEDBACK_FORM.questions if q.type == "text")
# After a further-training programme (ДПП): Приложение 1 verbatim, on its own screens.
COURSE_FORM = load_questionnaire(BUILTIN_DIR / "course_feedback.yaml")
COURSE_QUESTIONS = [q for q in COURSE_FORM.questions if q.code in ev.COURSE_QUESTIONS]
COURSE_COMMENT = next(q for q in COURSE_FORM.questions if q.type == "text")


# ---- helpers ---------------------------------------------------------------------------------


def _quiet(ctx: Ctx):
    spec = getattr(ctx.config, "quiet_hours", None)
    return outbox.parse_quiet_hours(spec) if spec else ev.QUIET_HOURS


async def _member(ctx: Ctx) -> Member:
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


def _is_coordinator(member: Member | None, municipality_id: int | None) -> bool:
    try:
        require_coordinator(member, municipality_id)
    except Forbidden:
        return False
    return True


def _short(text: str, limit: int = LABEL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(event, registration=None) -> str:
    start = ev.local(event.starts_at, event.municipality)
    mark = ""
    if registration is not None and registration.state == ev.GOING:
        mark = "✅ "
    elif registration is not None and registration.state == ev.WAITLIST:
        mark = "⏳ "
    return _short(f"{mark}{start:%d.%m %H:%M} {event.title}")


def _example(ctx: Ctx, municipality) -> str:
    moment = ev.local(ctx.now + timedelta(days=14), municipality)
    return f"{moment:%d.%m.%Y} 15:00"


def _reminder_phrase(event) -> str:
    offsets = sorted({int(m) for m in (event.event_type.reminder_offsets or [])}, reverse=True)
    parts = []
    for minutes in offsets:
        if minutes % (24 * 60) == 0:
            days = minutes // (24 * 60)
            parts.append("за неделю" if days == 7 else "за день" if days == 1 else f"за {days} дн.")
        elif minutes % 60 == 0:
            hours = minutes // 60
            parts.append("за час" if hours == 1 else f"за {hours} {ev.plural(hours, 'час', 'часа', 'часов')}")
        else:
            parts.append(f"за {minutes} мин")
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " и " + parts[-1]
    return f"Напомню {listed} до начала."


async def _event_or_none(ctx: Ctx):
    try:
        return await ev.get_event(ctx.uow, int(ctx.data.get("event_id") or 0))
    except (NotFound, ValueError):
        return None


def _card_lines(event, seats) -> list[str]:
    lines = [f"«{event.title}»", f"Вид: {event.event_type.name}", f"Когда: {ev.when_text(event)}"]
    where = ev.where_text(event)
    if where:
        lines.append(where)
    lines.append(f"Для кого: {AUDIENCES.get(event.audience, event.audience)}")
    if event.capacity is None:
        lines.append("Места: без ограничений")
    else:
        lines.append(f"Свободных мест: {seats.free} из {event.capacity}")
        if seats.waitlist:
            lines.append(f"В листе ожидания: {seats.waitlist}")
    if event.deficit_tags:
        groups = ", ".join(T.DEFICIT_GROUPS.get(tag, tag).lower() for tag in event.deficit_tags)
        lines.append(f"Темы (дефициты): {groups}")
    if event.organiser_contact:
        lines.append(f"Организатор: {event.organiser_contact}")
    if event.description:
        lines += ["", event.description]
    if event.status == ev.CANCELLED:
        lines += ["", "❗ Мероприятие отменено."]
    return lines


async def ics_files(ctx: Ctx) -> list[OutFile]:
    event = await _event_or_none(ctx)
    if event is None:
        return []
    return [OutFile(ev.ics_filename(event), ev.event_ics(event, now=ctx.now), caption=event.title)]


async def ics_text(ctx: Ctx) -> str:
    event = await _event_or_none(ctx)
    return ICS_TEXT.format(title=event.title) if event else GONE


# ---- the calendar ----------------------------------------------------------------------------


async def open_list(ctx: Ctx) -> None:
    member = await _member(ctx)
    ctx.data["role"] = member.role
    ctx.data["coord"] = _is_coordinator(member, member.municipality_id)
    ctx.data["feedback"] = bool(await ev.pending_feedback(ctx.uow, member, ctx.now))
    return None


async def list_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    if not await ev.upcoming_events(ctx.uow, member, ctx.now, limit=1):
        return NO_EVENTS
    name = member.municipality.name if member.municipality else ""
    return LIST_TITLE.format(municipality=name)


async def event_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    member = await _member(ctx)
    events = await ev.upcoming_events(ctx.uow, member, ctx.now)
    mine = await ev.registrations_of(ctx.uow, member.id, [event.id for event in events])
    return [Choice(str(event.id), _label(event, mine.get(event.id))) for event in events]


async def for_you_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    if not await ev.deficit_groups_of(ctx.uow, member):
        return FOR_YOU_NO_DEFICITS
    return FOR_YOU_TITLE


async def for_you_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    member = await _member(ctx)
    ranked = await ev.for_you(ctx.uow, member, ctx.now)
    mine = await ev.registrations_of(ctx.uow, member.id, [event.id for event, _ in ranked])
    return [
        Choice(str(event.id), _short(("⭐ " if groups else "") + _label(event, mine.get(event.id))))
        for event, groups in ranked
    ]


async def open_card(ctx: Ctx) -> str | None:
    member = await _member(ctx)
    event = await _event_or_none(ctx)
    if event is None or (event.municipality_id != member.municipality_id and member.role != Role.ADMIN):
        ctx.say(GONE)
        return "list"
    registration = await ev.registration_of(ctx.uow, event.id, member.id)
    seats = await ev.seats(ctx.uow, event)
    ctx.data["card"] = {
        "state": registration.state if registration else None,
        "full": seats.full,
        "open": event.status == ev.ACTIVE and event.starts_at > ctx.now,
        "active": event.status == ev.ACTIVE and event.ends_at > ctx.now,
        "coord": _is_coordinator(member, event.municipality_id),
    }
    return None


async def card_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    event = await _event_or_none(ctx)
    if event is None:
        return GONE
    lines = _card_lines(event, await ev.seats(ctx.uow, event))
    registration = await ev.registration_of(ctx.uow, event.id, member.id)
    if registration is not None and registration.state == ev.GOING:
        lines += ["", "✅ Вы записаны."]
    elif registration is not None and registration.state == ev.WAITLIST:
        lines += ["", f"⏳ Вы в листе ожидания (№ {await ev.waitlist_position(ctx.uow, registration)})."]
    return "\n".join(lines)


def _card(ctx: Ctx) -> dict:
    return ctx.data.get("card") or {}


def can_register(ctx: Ctx) -> bool:
    card = _card(ctx)
    return card.get("open", False) and card.get("state") not in (ev.GOING, ev.WAITLIST) and not card.get("full")


def can_wait(ctx: Ctx) -> bool:
    card = _card(ctx)
    return card.get("open", False) and card.get("state") not in (ev.GOING, ev.WAITLIST) and card.get("full", False)


def can_withdraw(ctx: Ctx) -> bool:
    return _card(ctx).get("open", False) and _card(ctx).get("state") in (ev.GOING, ev.WAITLIST)


def coordinates(ctx: Ctx) -> bool:
    return _card(ctx).get("coord", False) and _card(ctx).get("active", False)


def _vk_group(ctx: Ctx) -> int | None:
    """The VK community id when the VK channel is configured (`ctx.config` is the Settings), else None."""
    vk = getattr(ctx.config, "vk", None)
    if vk is None or getattr(vk, "token", None) is None or not getattr(vk, "group_id", None):
        return None
    return int(vk.group_id)


def can_announce(ctx: Ctx) -> bool:
    return _card(ctx).get("coord", False) and _card(ctx).get("open", False) and _vk_group(ctx) is not None


def is_teacher(ctx: Ctx) -> bool:
    return ctx.data.get("role") == Role.TEACHER


def is_coordinator(ctx: Ctx) -> bool:
    return bool(ctx.data.get("coord"))


async def do_register(ctx: Ctx) -> str:
    member = await _member(ctx)
    try:
        registration = await ev.register(ctx.uow, member, int(ctx.data["event_id"]), now=ctx.now, quiet=_quiet(ctx))
    except (Conflict, NotFound):
        ctx.say(CLOSED)
        return "card"
    except Forbidden:
        ctx.say(NOT_FOR_YOU)
        return "card"
    event = await ev.get_event(ctx.uow, registration.event_id)
    if registration.state == ev.GOING:
        ctx.say(REGISTERED.format(title=event.title, reminders=_reminder_phrase(event)).strip())
    else:
        ctx.say(WAITLISTED.format(position=await ev.waitlist_position(ctx.uow, registration)))
    return "card"


async def do_withdraw(ctx: Ctx) -> str:
    member = await _member(ctx)
    before = _card(ctx).get("state")
    try:
        await ev.withdraw(ctx.uow, member, int(ctx.data["event_id"]), now=ctx.now, quiet=_quiet(ctx))
    except NotFound:
        ctx.say(GONE)
        return "list"
    ctx.say(LEFT_WAITLIST if before == ev.WAITLIST else WITHDRAWN)
    return "card"


async def subs_enter(ctx: Ctx) -> None:
    member = await _member(ctx)
    ctx.data["types"] = sorted(await ev.subscriptions(ctx.uow, member.id))
    return None


async def type_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(event_type.code, _short(event_type.name)) for event_type in await ev.event_types(ctx.uow)]


async def save_subs(ctx: Ctx) -> str:
    member = await _member(ctx)
    chosen = await ev.set_subscriptions(ctx.uow, member, ctx.data.get("types") or [], now=ctx.now)
    ctx.say(f"Подписки сохранены: {len(chosen)}." if chosen else "Вы отписались от всех видов мероприятий.")
    return "list"


async def unsubscribe_all(ctx: Ctx) -> str:
    ctx.data["types"] = []
    return await save_subs(ctx)


def wall_text(event, group: int) -> str:
    """The announcement on the community wall: plain text, no seat count (it would go stale)."""
    lines = [f"📣 «{event.title}»", event.event_type.name, f"Когда: {ev.when_text(event)}"]
    where = ev.where_text(event)
    if where:
        lines.append(where)
    lines.append(f"Для кого: {AUDIENCES.get(event.audience, event.audience)}")
    if event.capacity is not None:
        lines.append(f"Мест: {event.capacity}")
    if event.organiser_contact:
        lines.append(f"Организатор: {event.organiser_contact}")
    if event.description:
        lines += ["", event.description]
    lines += ["", WALL_SIGN_UP.format(group=group)]
    return "\n".join(lines)


async def announce_on_wall(ctx: Ctx) -> str:
    """Queue the event's announcement for the community wall, once per event (the outbox key)."""
    member = await _member(ctx)
    event = await _event_or_none(ctx)
    group = _vk_group(ctx)
    if event is None:
        ctx.say(GONE)
        return "list"
    if group is None or not _is_coordinator(member, event.municipality_id):
        ctx.say(T.NO_RIGHTS)
        return "card"
    queued = await outbox.enqueue(
        ctx.uow, key=f"event:{event.id}:wall", kind=WALL_KIND, member_id=member.id, text=wall_text(event, group),
        due_at=ctx.now,
    )
    ctx.say(WALL_QUEUED if queued is not None else WALL_ALREADY)
    return "card"


async def people_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    try:
        rows = await ev.participants(ctx.uow, member, int(ctx.data["event_id"]))
    except (Forbidden, NotFound):
        return T.NO_RIGHTS
    going = [m.full_name for m, r in rows if r.state == ev.GOING]
    waiting = [m.full_name for m, r in rows if r.state == ev.WAITLIST]
    lines = [f"Записались: {len(going)}"] + [f"{i}. {name}" for i, name in enumerate(going, 1)]
    if waiting:
        lines += ["", f"Лист ожидания: {len(waiting)}"] + [f"{i}. {name}" for i, name in enumerate(waiting, 1)]
    return "\n".join(lines)


# ---- coordinator: create, edit, copy, cancel --------------------------------------------------


def validate_title(text: str, _ctx: Ctx) -> str:
    if len(text) < 3:
        raise InputError("Название слишком короткое.")
    return text


async def _municipality(ctx: Ctx):
    member = await _member(ctx)
    return await ctx.uow.reference.municipality(member.municipality_id) if member.municipality_id else None


async def parse_start(text: str, ctx: Ctx) -> str:
    municipality = await _municipality(ctx)
    try:
        start = ev.parse_local(text, municipality)
    except ValueError:
        raise InputError(f"Не понял дату. Напишите так: {_example(ctx, municipality)}") from None
    if start <= ctx.now:
        raise InputError("Это время уже прошло. Укажите будущую дату.")
    if start > ctx.now + timedelta(days=3 * 365):
        raise InputError("Слишком далеко: не позже чем через три года.")
    return start.isoformat()


async def parse_end(text: str, ctx: Ctx) -> str:
    municipality = await _municipality(ctx)
    start = datetime.fromisoformat(ctx.data["starts_at"])
    try:
        clock = ev.parse_clock(text)
    except ValueError:
        try:
            end = ev.parse_local(text, municipality)
        except ValueError:
            raise InputError("Не понял время. Напишите, например, 17:00.") from None
    else:
        day = ev.local(start, municipality).date()
        end = datetime.combine(day, clock, tzinfo=ev.zone_of(municipality)).astimezone(timezone.utc)
    if end <= start:
        raise InputError("Окончание должно быть позже начала.")
    if end - start > timedelta(days=31):
        raise InputError("Мероприятие может длиться не больше 31 дня.")
    return end.isoformat()


def parse_place(text: str, ctx: Ctx) -> str:
    if len(text) > 300:
        raise InputError("Слишком длинно: не больше 300 символов.")
    if text.startswith(("http://", "https://")):
        if " " in text:
            raise InputError("В ссылке не должно быть пробелов.")
        ctx.data["online_url"], ctx.data["place"] = text, None
    else:
        ctx.data["place"], ctx.data["online_url"] = text, None
    return text


def parse_capacity(text: str, _ctx: Ctx) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10000:
        raise InputError("Напишите число мест, например 30.")
    return int(text)


def parse_contact(text: str, _ctx: Ctx) -> str:
    if len(text) > 300:
        raise InputError("Слишком длинно: не больше 300 символов.")
    return text


async def start_new(ctx: Ctx) -> str | None:
    member = await _member(ctx)
    if not _is_coordinator(member, member.municipality_id):
        ctx.say(T.NO_RIGHTS)
        return "list"
    for key in ("type_code", "title", "starts_at", "ends_at", "place", "online_url", "audience", "capacity", "deficits",
                "contact"):
        ctx.data.pop(key, None)
    return None


async def pick_type(ctx: Ctx) -> str:
    event_type = await ev.event_type_by_code(ctx.uow, ctx.data["type_code"])
    ctx.data["audience"] = event_type.default_audience if event_type else "both"
    return "new_title"


async def deficit_choices(_ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(code, label) for code, label in T.DEFICIT_GROUPS.items()] + [Choice("none", NO_DEFICIT)]


async def new_review_text(ctx: Ctx) -> str:
    data = ctx.data
    municipality = await _municipality(ctx)
    event_type = await ev.event_type_by_code(ctx.uow, data.get("type_code", ""))
    start = ev.local(datetime.fromisoformat(data["starts_at"]), municipality)
    end = ev.local(datetime.fromisoformat(data["ends_at"]), municipality)
    deficits = [T.DEFICIT_GROUPS[code].lower() for code in data.get("deficits") or [] if code in T.DEFICIT_GROUPS]
    capacity = data.get("capacity")
    return "\n".join([
        "Проверьте мероприятие:", "",
        f"«{data.get('title')}»",
        f"Вид: {event_type.name if event_type else '—'}",
        f"Начало: {start:%d.%m.%Y %H:%M}, окончание: {end:%d.%m.%Y %H:%M}",
        f"Место: {data.get('place') or '—'}" if data.get("place") else f"Ссылка: {data.get('online_url')}",
        f"Для кого: {AUDIENCES.get(data.get('audience', 'both'))}",
        f"Мест: {capacity if capacity else 'без ограничений'}",
        f"Дефициты: {', '.join(deficits) or 'не указаны'}",
        f"Организатор: {data.get('contact') or '—'}",
    ])


def _explain(error: ev.EventInvalid) -> str:
    return {
        "starts_at": "Время начала уже прошло.",
        "ends_at": "Окончание должно быть позже начала (и не дальше 31 дня).",
        "place": "Нужно место или ссылка.",
        "online_url": "Ссылка должна начинаться с http:// или https://.",
        "capacity": "Число мест должно быть положительным.",
    }.get(error.field, "Проверьте данные мероприятия.")


async def publish(ctx: Ctx) -> str:
    member = await _member(ctx)
    data = ctx.data
    try:
        event = await ev.create_event(
            ctx.uow, member, municipality_id=member.municipality_id, type_code=data["type_code"],
            title=data["title"], starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]), now=ctx.now, place=data.get("place"),
            online_url=data.get("online_url"), audience=data.get("audience"), capacity=data.get("capacity"),
            deficit_tags=[code for code in data.get("deficits") or [] if code != "none"],
            organiser_contact=data.get("contact") or "", quiet=_quiet(ctx),
        )
    except Forbidden:
        ctx.say(T.NO_RIGHTS)
        return "list"
    except ev.EventInvalid as error:
        ctx.say(_explain(error))
        return "new_review"
    ctx.data["event_id"] = str(event.id)
    ctx.say("Мероприятие опубликовано. Подписчики получат приглашение.")
    return "card"


def apply_edit(field: str):
    """After an edit screen: save one field through the service and come back to the card."""

    async def apply(ctx: Ctx) -> str:
        member = await _member(ctx)
        event = await _event_or_none(ctx)
        if event is None:
            ctx.say(GONE)
            return "list"
        value = ctx.data.pop("value", None)
        if field == "starts_at":
            start = datetime.fromisoformat(value)
            changes = {"starts_at": start, "ends_at": start + (event.ends_at - event.starts_at)}
        elif field == "ends_at":
            changes = {"ends_at": datetime.fromisoformat(value)}
        elif field == "place":
            changes = {"place": ctx.data.pop("place", None), "online_url": ctx.data.pop("online_url", None)}
        else:
            changes = {field: value}
        try:
            await ev.edit_event(ctx.uow, member, event.id, changes, now=ctx.now, quiet=_quiet(ctx))
        except (Conflict, Forbidden):
            ctx.say("Это мероприятие уже нельзя изменить.")
            return "card"
        except ev.EventInvalid as error:
            ctx.say(_explain(error))
            return "edit"
        told = field in ("starts_at", "ends_at", "place")
        ctx.say("Сохранено." + (" Записавшиеся получат уведомление." if told else ""))
        return "card"

    return apply


async def edit_end_input(text: str, ctx: Ctx) -> str:
    event = await _event_or_none(ctx)
    if event is None:
        raise InputError(GONE)
    ctx.data["starts_at"] = event.starts_at.isoformat()
    return await parse_end(text, ctx)


async def do_copy(ctx: Ctx) -> str:
    member = await _member(ctx)
    try:
        copy = await ev.copy_event(ctx.uow, member, int(ctx.data["event_id"]),
                                   starts_at=datetime.fromisoformat(ctx.data.pop("value")), now=ctx.now,
                                   quiet=_quiet(ctx))
    except (Forbidden, NotFound):
        ctx.say(T.NO_RIGHTS)
        return "card"
    ctx.data["event_id"] = str(copy.id)
    ctx.say("Копия создана и опубликована.")
    return "card"


async def do_cancel(ctx: Ctx) -> str:
    member = await _member(ctx)
    try:
        event = await ev.cancel_event(ctx.uow, member, int(ctx.data["event_id"]), now=ctx.now, quiet=_quiet(ctx))
    except (Forbidden, NotFound):
        ctx.say(T.NO_RIGHTS)
        return "card"
    ctx.say(f"Мероприятие «{event.title}» отменено. Записавшиеся получат уведомление.")
    return "list"


async def cancel_text(ctx: Ctx) -> str:
    event = await _event_or_none(ctx)
    return CANCEL_CONFIRM.format(title=event.title) if event else GONE


async def start_example(ctx: Ctx) -> str:
    return ASK_START.format(example=_example(ctx, await _municipality(ctx)))


async def copy_example(ctx: Ctx) -> str:
    return ASK_COPY_START.format(example=_example(ctx, await _municipality(ctx)))


EVENTS = Flow(
    name="events",
    start="list",
    title="мероприятия",
    requires="member",
    on_cancel="flow:events",
    screens=[
        Screen("list", text=list_text, on_enter=open_list, choices=event_choices, save_as="event_id", go="card",
               per_page=6, back=False, cancel=False, buttons=[
                   Button("⭐ Для вас", "for_you", go="for_you", show_if=is_teacher),
                   Button("📝 Отзыв о прошедшем", "feedback", go="flow:event_feedback",
                          show_if=lambda ctx: bool(ctx.data.get("feedback"))),
                   Button("🔔 Подписки", "subs", go="subs"),
                   Button("➕ Новое мероприятие", "new", go="new_type", show_if=is_coordinator),
                   Button("В меню", "menu", go="flow:menu"),
               ]),
        Screen("for_you", text=for_you_text, choices=for_you_choices, save_as="event_id", go="card", per_page=6,
               cancel=False, buttons=[Button("К списку", "list", go="list")]),
        Screen("card", text=card_text, on_enter=open_card, back=False, cancel=False, buttons=[
            Button("✅ Иду", "yes", action=do_register, show_if=can_register),
            Button("⏳ В лист ожидания", "wait", action=do_register, show_if=can_wait),
            Button("❌ Не пойду", "no", action=do_withdraw, show_if=can_withdraw),
            Button("📆 Добавить в календарь", "ics", go="ics"),
            Button("👥 Участники", "people", go="people", show_if=coordinates),
            Button("✏️ Изменить", "edit", go="edit", show_if=coordinates),
            Button("📄 Копировать", "copy", go="copy", show_if=lambda ctx: _card(ctx).get("coord", False)),
            Button(WALL_BUTTON, "wall", action=announce_on_wall, show_if=can_announce),
            Button("🚫 Отменить мероприятие", "cancel_event", go="cancel_confirm", show_if=coordinates),
            Button("К списку", "list", go="list"),
        ]),
        Screen("ics", text=ics_text, files=ics_files, back=False, cancel=False,
               buttons=[Button("К мероприятию", "card", go="card")]),
        Screen("subs", text=SUBS_TEXT, on_enter=subs_enter, choices=type_choices, multi=True, save_as="types",
               go=save_subs, per_page=10, buttons=[Button("Отписаться от всех", "none", action=unsubscribe_all)]),
        Screen("people", text=people_text, back=False, cancel=False,
               buttons=[Button("К мероприятию", "card", go="card")]),
        # coordinator: a new event, step by step
        Screen("new_type", text=ASK_TYPE, on_enter=start_new, choices=type_choices, save_as="type_code", go=pick_type,
               per_page=10),
        Screen("new_title", text=ASK_TITLE, input=validate_title, save_as="title", go="new_start", max_length=300),
        Screen("new_start", text=start_example, input=parse_start, save_as="starts_at", go="new_end", max_length=40),
        Screen("new_end", text=ASK_END, input=parse_end, save_as="ends_at", go="new_place", max_length=40),
        Screen("new_place", text=ASK_PLACE, input=parse_place, go="new_audience", max_length=300),
        Screen("new_audience", text=ASK_AUDIENCE, buttons=[
            Button(label[:1].upper() + label[1:], code, save={"audience": code}, go="new_capacity")
            for code, label in AUDIENCES.items()
        ]),
        Screen("new_capacity", text=ASK_CAPACITY, input=parse_capacity, save_as="capacity", go="new_deficits",
               max_length=10,
               buttons=[Button("Без ограничений", "unlimited", save={"capacity": None}, go="new_deficits")]),
        Screen("new_deficits", text=ASK_DEFICITS, choices=deficit_choices, multi=True, exclusive=frozenset({"none"}),
               save_as="deficits", go="new_contact"),
        Screen("new_contact", text=ASK_CONTACT, input=parse_contact, save_as="contact", go="new_review",
               max_length=300),
        Screen("new_review", text=new_review_text, buttons=[
            Button("Опубликовать", "publish", action=publish),
            Button("Начать заново", "restart", go="new_type"),
        ]),
        # coordinator: changes to an existing event
        Screen("edit", text="Что изменить? Об изменении даты, времени или места записавшиеся узнают сразу.",
               back=False, buttons=[
                   Button("Название", "title", go="edit_title"),
                   Button("Дата и время начала", "start", go="edit_start"),
                   Button("Время окончания", "end", go="edit_end"),
                   Button("Место или ссылка", "place", go="edit_place"),
                   Button("Количество мест", "capacity", go="edit_capacity"),
                   Button("Контакт организатора", "contact", go="edit_contact"),
                   Button("К мероприятию", "card", go="card"),
               ], cancel=False),
        Screen("edit_title", text=ASK_TITLE, input=validate_title, save_as="value", go=apply_edit("title"),
               max_length=300),
        Screen("edit_start", text=start_example, input=parse_start, save_as="value", go=apply_edit("starts_at"),
               max_length=40),
        Screen("edit_end", text=ASK_END, input=edit_end_input, save_as="value", go=apply_edit("ends_at"),
               max_length=40),
        Screen("edit_place", text=ASK_PLACE, input=parse_place, go=apply_edit("place"), max_length=300),
        Screen("edit_capacity", text=ASK_CAPACITY, input=parse_capacity, save_as="value", go=apply_edit("capacity"),
               max_length=10, buttons=[Button("Без ограничений", "unlimited", save={"value": None},
                                              go=apply_edit("capacity"))]),
        Screen("edit_contact", text=ASK_CONTACT, input=parse_contact, save_as="value",
               go=apply_edit("organiser_contact"), max_length=300),
        Screen("copy", text=copy_example, input=parse_start, save_as="value", go=do_copy, max_length=40),
        Screen("cancel_confirm", text=cancel_text, back=False, buttons=[
            Button("Да, отменить", "yes", action=do_cancel),
            Button("Нет", "no", go="card"),
        ], cancel=False),
    ],
)


# ---- after the event: attendance and feedback -------------------------------------------------


async def next_pending(ctx: Ctx) -> str | None:
    member = await _member(ctx)
    pending = await ev.pending_feedback(ctx.uow, member, ctx.now)
    if not pending:
        ctx.say(NOTHING_TO_ASK)
        return "flow:menu"
    for key in [key for key in ctx.data if key.startswith("a_")] + ["comment", "deficit", "groups"]:
        ctx.data.pop(key, None)
    ctx.data["event_id"] = str(pending[0].id)
    return None


async def attended_text(ctx: Ctx) -> str:
    event = await _event_or_none(ctx)
    return ATTENDED_ASK.format(title=event.title, when=ev.when_text(event)) if event else GONE


def attended(value: bool):
    async def action(ctx: Ctx) -> str:
        member = await _member(ctx)
        try:
            await ev.record_attendance(ctx.uow, member, int(ctx.data["event_id"]), value, now=ctx.now)
        except (NotFound, Conflict):
            ctx.say(GONE)
            return "ask"
        if value:
            course = ev.feedback_questions(await _event_or_none(ctx)) == ev.COURSE_QUESTIONS
            return f"c_{COURSE_QUESTIONS[0].code}" if course else f"q_{SCALE_QUESTIONS[0].code}"
        ctx.say(NOT_ATTENDED)
        return "ask"

    return action


def _next_of(index: int, questions=SCALE_QUESTIONS, prefix: str = "q") -> str:
    return f"{prefix}_{questions[index + 1].code}" if index + 1 < len(questions) else f"{prefix}_comment"


def scale_screens(questions, prefix: str, *, opening=None) -> list[Screen]:
    """One screen per 3-point question, each option a button that saves it and moves on; `opening`
    (a callable) draws the first one, for a form that starts with its title and preamble."""
    return [
        Screen(f"{prefix}_{question.code}",
               text=opening if index == 0 and opening else f"{question.number}. {question.text}",
               buttons=[Button(option.text, option.code, save={f"a_{question.code}": option.code},
                               go=_next_of(index, questions, prefix))
                        for option in question.options])
        for index, question in enumerate(questions)
    ]


async def course_opening(ctx: Ctx) -> str:
    """Приложение 1's title (the programme is the event's title) and preamble, then its first question."""
    event = await _event_or_none(ctx)
    values = dict(event.municipality.texts or {}) if event is not None and event.municipality else {}
    if event is not None:
        values["programme"] = event.title
    form = COURSE_FORM.rendered(values)
    first = form.questions[0]
    return f"{form.title}\n\n{form.preamble}\n\n{first.number}. {first.text}"


def comment_screen(question, prefix: str) -> Screen:
    return Screen(f"{prefix}_comment", text=f"{question.number}. {question.text}", input=lambda text, _c: text,
                  save_as="comment", go="deficit", max_length=1000,
                  buttons=[Button("Пропустить", "skip", go="deficit")])


async def deficit_enter(ctx: Ctx) -> str | None:
    member = await _member(ctx)
    event = await _event_or_none(ctx)
    groups = await ev.feedback_deficit_groups(ctx.uow, member, event) if event else []
    if not groups:
        return await finish_feedback(ctx)
    ctx.data["groups"] = groups
    return None


def deficit_text(ctx: Ctx) -> str:
    groups = ", ".join(T.DEFICIT_GROUPS.get(code, code).lower() for code in ctx.data.get("groups") or [])
    return DEFICIT_ASK.format(groups=groups)


async def finish_feedback(ctx: Ctx) -> str:
    member = await _member(ctx)
    asked = ev.feedback_questions(await _event_or_none(ctx))
    answers = {code: ctx.data[f"a_{code}"] for code in asked if ctx.data.get(f"a_{code}")}
    try:
        await ev.save_feedback(
            ctx.uow, member, int(ctx.data["event_id"]), answers=answers, now=ctx.now, comment=ctx.data.get("comment"),
            deficit_groups=ctx.data.get("groups") or [], deficit_still_strong=ctx.data.get("deficit"),
        )
    except Conflict:
        ctx.say(GONE)
        return "ask"
    ctx.say((COURSE_FORM.closing or FEEDBACK_DONE) if asked == ev.COURSE_QUESTIONS else FEEDBACK_DONE)
    return "ask"


EVENT_FEEDBACK = Flow(
    name="event_feedback",
    start="ask",
    title="отзыв о мероприятии",
    requires="member",
    screens=[
        Screen("ask", text=attended_text, on_enter=next_pending, back=False, buttons=[
            Button("Да, был(а)", "yes", action=attended(True)),
            Button("Нет, не получилось", "no", action=attended(False)),
        ]),
        *scale_screens(SCALE_QUESTIONS, "q"),
        comment_screen(COMMENT_QUESTION, "q"),
        *scale_screens(COURSE_QUESTIONS, "c", opening=course_opening),
        comment_screen(COURSE_COMMENT, "c"),
        Screen("deficit", text=deficit_text, on_enter=deficit_enter, buttons=[
            Button(label, code, save={"deficit": code}, go=finish_feedback) for code, label in DEFICIT_OPTIONS.items()
        ]),
    ],
)


# ---- the public calendar (no registration) ----------------------------------------------------


async def public_enter(ctx: Ctx) -> str | None:
    if await municipality_of(ctx) is None:
        ctx.say(CHOOSE_MUNICIPALITY_FIRST)
        return "flow:start"
    return None


async def public_text(ctx: Ctx) -> str:
    municipality = await municipality_of(ctx)
    if municipality is None or not await ev.upcoming_public(ctx.uow, municipality.id, ctx.now, limit=1):
        return NO_EVENTS.split(".")[0] + "."
    return LIST_TITLE.format(municipality=municipality.name)


async def public_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    municipality = await municipality_of(ctx)
    if municipality is None:
        return []
    events = await ev.upcoming_public(ctx.uow, municipality.id, ctx.now)
    return [Choice(str(event.id), _label(event)) for event in events]


async def public_card_text(ctx: Ctx) -> str:
    event = await _event_or_none(ctx)
    municipality = await municipality_of(ctx)
    if event is None or municipality is None or event.municipality_id != municipality.id:
        return GONE
    return "\n".join(_card_lines(event, await ev.seats(ctx.uow, event)) + ["", PUBLIC_REGISTER])


EVENTS_PUBLIC = Flow(
    name="events_public",
    start="list",
    title="календарь мероприятий",
    on_cancel="flow:public",
    screens=[
        Screen("list", text=public_text, on_enter=public_enter, choices=public_choices, save_as="event_id", go="card",
               per_page=6, back=False, cancel=False, buttons=[
                   Button("Зарегистрироваться", "register", go="flow:start"),
                   Button("Назад", "back", go="flow:public"),
               ]),
        Screen("card", text=public_card_text, back=False, cancel=False, buttons=[
            Button("📆 Добавить в календарь", "ics", go="ics"),
            Button("Зарегистрироваться", "register", go="flow:start"),
            Button("К списку", "list", go="list"),
        ]),
        Screen("ics", text=ics_text, files=ics_files, back=False, cancel=False,
               buttons=[Button("К мероприятию", "card", go="card")]),
    ],
)

FLOWS = [EVENTS, EVENT_FEEDBACK, EVENTS_PUBLIC]
COMMANDS = [Command("events", "flow:events", description="Мероприятия")]

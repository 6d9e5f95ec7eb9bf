"""Taking a questionnaire («Вопрос 7 из 28»), the coordinator's campaigns, and a teacher's answers by year.

The questionnaire is data, so the flow has one generic screen per kind of question (single,
multi, text, year, matrix, «Другое» text) whose text and choices read the current question
(`q`, and `row` inside a matrix) from ctx.data; `go` callables save the answer to the database
and pick the screen of the next question. Every answer is stored as it is given, with the
position, so «Продолжить позже» and a restart resume exactly where one stopped.
«Назад» is our own button: it moves to the previous asked question, not along the engine's stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dialogs.context import Ctx
from dialogs.flows import texts as T
from dialogs.flows.common import MenuItem, menu_item
from dialogs.model import Button, Choice, Flow, InputError, OutFile, Screen
from dialogs.questionnaires.schema import Question, Questionnaire
from storage.models import Member, Role
from storage.models_surveys import SurveyResponse
from storage.repositories.reference import fold
from storage.services import export as export_service
from storage.services import surveys as S
from storage.services.errors import Conflict, Forbidden, NotFound

TEACHERS = frozenset({Role.TEACHER})
PRACTITIONERS = frozenset({Role.TEACHER, Role.MENTOR})
COORDINATORS = frozenset({Role.COORDINATOR, Role.ADMIN})

menu_item(MenuItem("survey", "📝 Анкета молодого педагога", "flow:questionnaire", TEACHERS, order=40))
menu_item(MenuItem("survey_m", "📝 Анкеты", "flow:questionnaire", frozenset({Role.MENTOR}), order=40))
menu_item(MenuItem("campaigns", "📊 Кампании анкетирования", "flow:campaigns", COORDINATORS, order=35))

LABEL_LIMIT = 40  # VK draws at most 40 characters of a button label
PAUSE = "Продолжить позже"
KEEP = "Оставить ответ"
SKIP = "Пропустить"
PROGRESS = "Вопрос {number} из {total}"
NO_SURVEYS = (
    "Сейчас нет открытых для вас анкет. Когда методическая служба начнёт опрос, я пришлю приглашение."
)
PICK_SURVEY = "Выберите анкету:"
QUESTIONS_COUNT = "Вопросов: {total}. Ответы сохраняются после каждого шага: можно нажать «Продолжить позже» и вернуться к анкете из меню."
STOPPED_AT = "Вы остановились на вопросе {number} из {total}."
STOPPED_AT_REVIEW = "Вы ответили на все вопросы: осталось проверить ответы и отправить анкету."
ANONYMOUS_NOTE = "Ответы хранятся без связи с вами: отмечается только, что вы уже ответили."
MULTI_HINT = "Отметьте все подходящие варианты и нажмите «Готово»."
YEAR_HINT = "Напишите год четырьмя цифрами."
TEXT_HINT = "Напишите ответ сообщением."
YOUR_ANSWER = "Ваш ответ: {answer}"
ROW = "Строка {index} из {count}:\n{text}"
OTHER_PROMPT = "Напишите свой вариант ответа:"
PAUSED = "Ответы сохранены. Чтобы продолжить, откройте анкету из главного меню: начнём с того же места."
REVIEW_HEAD = "Проверьте ответы перед отправкой. Чтобы исправить, нажмите «Изменить ответ»."
EDIT_PICK = "Какой ответ изменить?"
SENT = "Спасибо! Анкета отправлена. Ваши ответы помогут методической службе спланировать работу на следующий год."
SENT_ANONYMOUS = "Спасибо! Анкета отправлена анонимно."
ALREADY_SENT = "Вы уже ответили на эту анкету. Спасибо!"
CLOSED = "Этот опрос уже закрыт."
MISSING = "Не хватает ответа на вопрос {number}."
GONE = "Анкета не найдена. Откройте её заново из меню."
NOT_ANSWERED = "—"

ERRORS = {
    "not_an_option": "Выберите вариант кнопкой под сообщением или напишите его номер.",
    "required": "Это обязательный вопрос: ответьте, пожалуйста.",
    "required_multi": "Отметьте хотя бы один вариант, затем нажмите «Готово».",
    "exclusive": "Вариант «{option}» нельзя отметить вместе с другими.",
    "other_required": "Напишите, что вы имеете в виду под «Другое».",
    "too_long": "Слишком длинный ответ: {length} символов, а можно не больше {limit}. Сократите, пожалуйста.",
    "year_format": "Напишите год четырьмя цифрами, например 2021.",
    "year_range": "Год должен быть от {low} до {high}. Проверьте, пожалуйста.",
    "not_applicable": "Этот вопрос сейчас не задаётся.",
    "unknown_row": "Выберите вариант кнопкой под сообщением.",
}

INVITE_TEXT = (
    "Приглашаем ответить на «{title}». Опрос идёт до {closes}. Ответы сохраняются после каждого шага: "
    "можно прерваться и продолжить позже."
)
REMIND_TEXT = (
    "Напоминаем об анкете «{title}»: ответить можно до {closes}. Если вы уже начали, продолжим с того места, "
    "где вы остановились."
)
INVITE_BUTTON = "Заполнить анкету"


def error_text(error: S.InvalidAnswer, question: Question | None = None) -> str:
    """The message for an answer the service refused."""
    reason = error.reason
    if reason == "required" and question is not None and question.type == "multi":
        reason = "required_multi"
    return ERRORS.get(reason, ERRORS["not_an_option"]).format(**error.params)


def shorten(text: str, limit: int) -> str:
    """Text cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def numbered(question: Question) -> bool:
    """Whether options are too long for buttons and are listed by number in the text instead."""
    return any(len(option.text) > LABEL_LIMIT for option in question.options)


def option_labels(question: Question) -> dict[str, str]:
    """Button labels of a question's options: the text, or «N. text…» when some text is long."""
    if not numbered(question):
        return {option.code: option.text for option in question.options}
    return {
        option.code: shorten(f"{index}. {option.text}", LABEL_LIMIT)
        for index, option in enumerate(question.options, start=1)
    }


# ---- where we are ------------------------------------------------------------------------------


@dataclass
class Here:
    """The person's response being filled, its questionnaire and answers."""

    member: Member
    response: SurveyResponse
    questionnaire: Questionnaire
    answers: dict[str, S.StoredAnswer]

    @property
    def total(self) -> int:
        return max(question.number for question in self.questionnaire.questions)


async def here(ctx: Ctx, *, fresh: bool = False) -> Here:
    """Load (once per event, or again after a save) the response in ctx.data["rid"]."""
    cached: Here | None = getattr(ctx, "_survey_here", None)
    if cached is not None and not fresh:
        return cached
    member = await ctx.member()
    if member is None or "rid" not in ctx.data:
        raise NotFound("response")
    response = cached.response if cached is not None else await S.own_response(ctx.uow, member, int(ctx.data["rid"]))
    questionnaire = cached.questionnaire if cached is not None else await S.questionnaire_for_response(
        ctx.uow, response, member)
    current = Here(member, response, questionnaire, await S.answers_of(ctx.uow, response.id))
    setattr(ctx, "_survey_here", current)
    return current


def current_question(ctx: Ctx, state: Here) -> Question:
    return state.questionnaire.question(ctx.data["q"])


#: What the flow keeps in ctx.data: the response, the question (and matrix row) shown, the ticks of a
#: multi question, flags for optional buttons, and "ret" while editing from the review.
FLOW_KEYS = ("rid", "q", "row", "sel", "has", "req", "ret", "otherv", "has_other", "draft", "cid", "pick")
SCREEN_OF = {"single": "single", "multi": "multi", "text": "text", "year": "year", "matrix": "matrix"}


async def goto(ctx: Ctx, code: str, *, row: int = 0) -> str:
    """Show a question: remember it (also in the database, for resuming) and pick its screen."""
    state = await here(ctx)
    question = state.questionnaire.question(code)
    answer = state.answers.get(code)
    ctx.data["q"] = code
    ctx.data["row"] = row
    ctx.data["has"] = answer is not None and S.is_complete(question, answer)
    ctx.data["req"] = question.required
    if question.type == "multi":
        ctx.data["sel"] = list(answer.value) if answer is not None else []
    position = f"{code}/{question.rows[row].code}" if question.type == "matrix" else code
    await S.set_position(ctx.uow, state.response, position, now=ctx.now)
    return SCREEN_OF[question.type]


async def to_review(ctx: Ctx) -> str:
    state = await here(ctx)
    ctx.data.pop("ret", None)
    await S.set_position(ctx.uow, state.response, S.REVIEW, now=ctx.now)
    return "review"


async def advance(ctx: Ctx, *, fresh: bool = True) -> str:
    """After an answer: the next question, or back to the review after an edit. `fresh=False`:
    the answers already read hold the one just saved (see `save`)."""
    state = await here(ctx, fresh=fresh)
    if ctx.data.get("ret") != "review":
        following = S.next_question(state.questionnaire, state.answers, ctx.data.get("q"))
        if following is not None:
            return await goto(ctx, following.code)
    missing = S.first_unanswered(state.questionnaire, state.answers)
    if missing is not None:
        return await goto(ctx, missing.code)
    return await to_review(ctx)


async def resume(ctx: Ctx) -> str:
    """Go to where the response stopped (a question, a matrix row, or the review)."""
    state = await here(ctx)
    position = state.response.position
    asked = {question.code for question in S.applicable(state.questionnaire, state.answers)}
    if position == S.REVIEW:
        missing = S.first_unanswered(state.questionnaire, state.answers)
        return await goto(ctx, missing.code) if missing is not None else await to_review(ctx)
    if position:
        code, _, row_code = position.partition("/")
        if code in asked:
            question = state.questionnaire.question(code)
            rows = [row.code for row in question.rows]
            return await goto(ctx, code, row=rows.index(row_code) if row_code in rows else 0)
    first = S.next_question(state.questionnaire, state.answers, None)
    return await goto(ctx, first.code)


async def save(ctx: Ctx, value, other_text: str | None = None) -> str | None:
    """Save the current question's answer; on a refusal say why and return None."""
    state = await here(ctx)
    question = current_question(ctx, state)
    try:
        answer = await S.save_answer(ctx.uow, state.response, state.questionnaire, question.code, value, other_text,
                                     now=ctx.now, today=ctx.now.date(), answers=state.answers)
    except S.InvalidAnswer as error:
        ctx.say(error_text(error, question))
        return None
    state.answers[question.code] = answer
    return await advance(ctx, fresh=False)


def guarded(action):
    """Actions and `go` callables: a vanished or foreign response sends the person back to the start."""

    async def run(ctx: Ctx):
        try:
            return await action(ctx)
        except NotFound:
            ctx.say(GONE)
            return "flow:menu"
        except Conflict as error:
            ctx.say(CLOSED if str(error) == "closed" else ALREADY_SENT)
            return "flow:menu"

    return run


# ---- texts -----------------------------------------------------------------------------------------


def describe(question: Question, answer: S.StoredAnswer | None) -> str:
    return S.describe_answer(question, answer) or NOT_ANSWERED


async def question_text(ctx: Ctx) -> str:
    try:
        state = await here(ctx)
    except NotFound:
        return GONE
    question = current_question(ctx, state)
    answer = state.answers.get(question.code)
    lines = [PROGRESS.format(number=question.number, total=state.total), "", question.text]
    if question.hint:
        lines.append(question.hint)
    if question.type in ("single", "multi") and numbered(question):
        lines.append("")
        lines += [f"{index}. {option.text}" for index, option in enumerate(question.options, start=1)]
    if question.type == "multi":
        lines += ["", MULTI_HINT]
    elif question.type == "year":
        lines += ["", YEAR_HINT]
    elif question.type == "text":
        lines += ["", TEXT_HINT]
    elif question.type == "matrix":
        row = question.rows[int(ctx.data.get("row", 0))]
        lines += ["", ROW.format(index=int(ctx.data.get("row", 0)) + 1, count=len(question.rows), text=row.text)]
        if answer is not None and row.code in answer.value:
            chosen = question.option(answer.value[row.code]).text
            lines += ["", YOUR_ANSWER.format(answer=chosen)]
        return "\n".join(lines)
    if answer is not None and question.type != "multi":
        lines += ["", YOUR_ANSWER.format(answer=describe(question, answer))]
    return "\n".join(lines)


async def other_text_prompt(ctx: Ctx) -> str:
    try:
        state = await here(ctx)
    except NotFound:
        return GONE
    question = current_question(ctx, state)
    option = question.other_option
    lines = [PROGRESS.format(number=question.number, total=state.total), "", question.text, "",
             option.other_prompt or OTHER_PROMPT]
    answer = state.answers.get(question.code)
    if answer is not None and answer.other_text:
        lines += ["", YOUR_ANSWER.format(answer=answer.other_text)]
    return "\n".join(lines)


# ---- choices and input -------------------------------------------------------------------------------


async def option_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    try:
        state = await here(ctx)
    except NotFound:
        return []
    question = current_question(ctx, state)
    labels = option_labels(question)
    if question.type == "multi":
        chosen = set(ctx.data.get("sel", []))
        return [Choice(o.code, f"{T.TICK_ON if o.code in chosen else T.TICK_OFF} {labels[o.code]}")
                for o in question.options]
    return [Choice(option.code, labels[option.code]) for option in question.options]


async def option_by_number(text: str, ctx: Ctx) -> str:
    """A typed option number (or option text) instead of a button."""
    state = await here(ctx)
    question = current_question(ctx, state)
    cleaned = text.strip().rstrip(".")
    if cleaned.isdigit() and 1 <= int(cleaned) <= len(question.options):
        return question.options[int(cleaned) - 1].code
    for option in question.options:
        if option.text.casefold().rstrip(":") == cleaned.casefold().rstrip(":"):
            return option.code
    raise InputError(ERRORS["not_an_option"])


async def after_single(ctx: Ctx) -> str:
    state = await here(ctx)
    question = current_question(ctx, state)
    code = ctx.data.pop("pick")
    if question.other_option is not None and code == question.other_option.code:
        ctx.data["otherv"] = code
        return "other"
    return await save(ctx, code) or "stay"


async def toggle(ctx: Ctx) -> str:
    state = await here(ctx)
    question = current_question(ctx, state)
    code = ctx.data.pop("pick")
    chosen = list(ctx.data.get("sel", []))
    exclusive = set(question.exclusive)
    if code in chosen:
        chosen.remove(code)
    elif code in exclusive:
        chosen = [code]
    else:
        chosen = [c for c in chosen if c not in exclusive] + [code]
    ctx.data["sel"] = [option.code for option in question.options if option.code in chosen]
    return "stay"


async def multi_done(ctx: Ctx) -> str:
    state = await here(ctx)
    question = current_question(ctx, state)
    chosen = list(ctx.data.get("sel", []))
    if question.other_option is not None and question.other_option.code in chosen:
        ctx.data["otherv"] = chosen
        return "other"
    return await save(ctx, chosen) or "stay"


async def text_answer(text: str, ctx: Ctx) -> str:
    """Validate and save a text or year answer (the engine then runs `advance`)."""
    state = await here(ctx)
    question = current_question(ctx, state)
    try:
        await S.save_answer(ctx.uow, state.response, state.questionnaire, question.code, text, now=ctx.now,
                            today=ctx.now.date())
    except S.InvalidAnswer as error:
        raise InputError(error_text(error, question)) from None
    return text


async def other_answer(text: str, ctx: Ctx) -> str:
    state = await here(ctx)
    question = current_question(ctx, state)
    try:
        await S.save_answer(ctx.uow, state.response, state.questionnaire, question.code, ctx.data.get("otherv"),
                            text, now=ctx.now, today=ctx.now.date())
    except S.InvalidAnswer as error:
        raise InputError(error_text(error, question)) from None
    ctx.data.pop("otherv", None)
    return text


async def keep_other(ctx: Ctx) -> str:
    state = await here(ctx)
    answer = state.answers.get(ctx.data["q"])
    return await save(ctx, ctx.data.get("otherv"), answer.other_text if answer else None) or "stay"


def has_other_text(ctx: Ctx) -> bool:
    return bool(ctx.data.get("has_other"))


async def after_matrix(ctx: Ctx) -> str:
    state = await here(ctx)
    question = current_question(ctx, state)
    row = int(ctx.data.get("row", 0))
    await S.save_matrix_row(ctx.uow, state.response, state.questionnaire, question.code, question.rows[row].code,
                            ctx.data.pop("pick"), now=ctx.now)
    if row + 1 < len(question.rows):
        return await goto(ctx, question.code, row=row + 1)
    return await advance(ctx)


async def keep(ctx: Ctx) -> str:
    return await advance(ctx)


async def skip(ctx: Ctx) -> str:
    state = await here(ctx)
    await S.clear_answer(ctx.uow, state.response, ctx.data["q"], now=ctx.now)
    return await advance(ctx)


async def previous(ctx: Ctx) -> str:
    """«Назад»: the previous matrix row, else the previous asked question, else the introduction."""
    state = await here(ctx)
    code = ctx.data.get("q")
    if code is not None:
        question = state.questionnaire.question(code)
        row = int(ctx.data.get("row", 0))
        if question.type == "matrix" and row > 0:
            return await goto(ctx, code, row=row - 1)
    earlier = S.previous_question(state.questionnaire, state.answers, code)
    if earlier is None:
        return "intro"
    last_row = len(earlier.rows) - 1 if earlier.type == "matrix" else 0
    return await goto(ctx, earlier.code, row=last_row)


async def back_from_review(ctx: Ctx) -> str:
    state = await here(ctx)
    earlier = S.previous_question(state.questionnaire, state.answers, None)
    last_row = len(earlier.rows) - 1 if earlier.type == "matrix" else 0
    return await goto(ctx, earlier.code, row=last_row)


async def back_from_other(ctx: Ctx) -> str:
    state = await here(ctx)
    return SCREEN_OF[current_question(ctx, state).type]


async def pause(ctx: Ctx) -> str:
    ctx.say(PAUSED)
    return "flow:menu"


async def enter_other(ctx: Ctx) -> None:
    state = await here(ctx)
    answer = state.answers.get(ctx.data["q"])
    ctx.data["has_other"] = bool(answer is not None and answer.other_text)
    return None


# ---- start, introduction, review, submit ------------------------------------------------------------


async def available(ctx: Ctx) -> list[S.AvailableSurvey]:
    cached = getattr(ctx, "_survey_available", None)
    if cached is None:
        member = await ctx.member()
        cached = await S.available_surveys(ctx.uow, member, now=ctx.now) if member else []
        setattr(ctx, "_survey_available", cached)
    return cached


async def choose(ctx: Ctx) -> str | None:
    """On entering: one open survey opens at once; several are listed; none gets a short note."""
    ctx.data.pop("rid", None)
    surveys = await available(ctx)
    if len(surveys) == 1:
        ctx.data["cid"] = surveys[0].campaign.id
        return "intro"
    return None


async def start_text(ctx: Ctx) -> str:
    return PICK_SURVEY if await available(ctx) else NO_SURVEYS


async def survey_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    return [Choice(str(s.campaign.id), shorten(s.version.title, 60)) for s in await available(ctx)]


async def load_intro(ctx: Ctx) -> None:
    found = next((s for s in await available(ctx) if s.campaign.id == int(ctx.data.get("cid", 0))), None)
    ctx.data["draft"] = found is not None and found.response is not None
    return None


async def intro_text(ctx: Ctx) -> str:
    found = next((s for s in await available(ctx) if s.campaign.id == int(ctx.data.get("cid", 0))), None)
    if found is None:
        return NO_SURVEYS
    member = await ctx.member()
    municipality = await ctx.uow.reference.municipality(member.municipality_id)
    questionnaire = S.rendered_for(found.version, municipality)
    total = max(question.number for question in questionnaire.questions)
    lines = [questionnaire.title]
    if questionnaire.subtitle:
        lines.append(questionnaire.subtitle)
    lines += ["", questionnaire.preamble, "", QUESTIONS_COUNT.format(total=total)]
    if questionnaire.anonymous:
        lines.append(ANONYMOUS_NOTE)
    if found.response is not None and found.response.position:
        if found.response.position == S.REVIEW:
            lines += ["", STOPPED_AT_REVIEW]
        else:
            code = found.response.position.partition("/")[0]
            number = next((q.number for q in questionnaire.questions if q.code == code), None)
            if number is not None:
                lines += ["", STOPPED_AT.format(number=number, total=total)]
    return "\n".join(lines)


async def begin(ctx: Ctx) -> str:
    member = await ctx.member()
    try:
        response = await S.start_or_resume(ctx.uow, member, now=ctx.now, campaign_id=int(ctx.data["cid"]))
    except Forbidden:
        ctx.say(T.NO_RIGHTS)
        return "flow:menu"
    ctx.data["rid"] = response.id
    return await resume(ctx)


def is_draft(ctx: Ctx) -> bool:
    return bool(ctx.data.get("draft"))


async def review_text(ctx: Ctx) -> str:
    try:
        state = await here(ctx)
    except NotFound:
        return GONE
    lines = [REVIEW_HEAD, ""]
    for item in await S.review(ctx.uow, state.response, state.questionnaire):
        question = item.question
        lines.append(f"{question.number}. {shorten(question.text, 60)}")
        lines.append(f"   {shorten(describe(question, item.answer), 90)}")
    return "\n".join(lines)


async def edit_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    try:
        state = await here(ctx)
    except NotFound:
        return []
    return [
        Choice(question.code, shorten(f"{question.number}. {question.text}", LABEL_LIMIT))
        for question in S.applicable(state.questionnaire, state.answers)
    ]


async def edit_pick(ctx: Ctx) -> str:
    ctx.data["ret"] = "review"
    return await goto(ctx, ctx.data.pop("pick"))


async def submit(ctx: Ctx) -> str:
    state = await here(ctx)
    try:
        result = await S.submit(ctx.uow, state.member, state.response, state.questionnaire, now=ctx.now)
    except S.Incomplete as missing:
        ctx.say(MISSING.format(number=state.questionnaire.question(missing.question).number))
        ctx.data["ret"] = "review"
        return await goto(ctx, missing.question)
    for key in FLOW_KEYS:
        ctx.data.pop(key, None)
    ctx.data["sent_anonymous"] = result.anonymous
    return "done"


# ---- the flow -----------------------------------------------------------------------------------------

NAV = [
    Button(T.BACK, "prev", action=guarded(previous)),
    Button(PAUSE, "pause", action=pause),
]


def question_screen(screen_id: str, **options) -> Screen:
    return Screen(screen_id, text=question_text, back=False, cancel=False, **options)


QUESTIONNAIRE = Flow(
    name="questionnaire",
    start="start",
    title="анкету",
    requires="member",
    roles=PRACTITIONERS,
    screens=[
        Screen("start", text=start_text, on_enter=choose, choices=survey_choices, save_as="cid", go="intro",
               buttons=[Button("В меню", "menu", go="flow:menu")], back=False, cancel=False),
        Screen("intro", text=intro_text, on_enter=load_intro, back=False, cancel=False, buttons=[
            Button("Начать", "begin", action=guarded(begin), show_if=lambda ctx: not is_draft(ctx)),
            Button("Продолжить", "resume", action=guarded(begin), show_if=is_draft),
            Button("В меню", "menu", go="flow:menu"),
        ]),
        question_screen("single", choices=option_choices, input=option_by_number, save_as="pick",
                        go=guarded(after_single), per_page=15, buttons=NAV),
        question_screen("multi", choices=option_choices, input=option_by_number, save_as="pick",
                        go=guarded(toggle), per_page=15,
                        buttons=[Button(T.DONE, "done", action=guarded(multi_done)), *NAV]),
        question_screen("text", input=text_answer, go=guarded(advance), max_length=4000, buttons=[
            Button(KEEP, "keep", action=guarded(keep), show_if=lambda ctx: bool(ctx.data.get("has"))),
            Button(SKIP, "skip", action=guarded(skip), show_if=lambda ctx: not ctx.data.get("req", True)),
            *NAV,
        ]),
        question_screen("year", input=text_answer, go=guarded(advance), max_length=20, buttons=[
            Button(KEEP, "keep", action=guarded(keep), show_if=lambda ctx: bool(ctx.data.get("has"))),
            *NAV,
        ]),
        question_screen("matrix", choices=option_choices, input=option_by_number, save_as="pick",
                        go=guarded(after_matrix), per_page=15, buttons=NAV),
        Screen("other", text=other_text_prompt, on_enter=enter_other, input=other_answer, go=guarded(advance),
               max_length=4000, back=False, cancel=False, buttons=[
                   Button(KEEP, "keep", action=guarded(keep_other), show_if=has_other_text),
                   Button(T.BACK, "prev", action=guarded(back_from_other)),
                   Button(PAUSE, "pause", action=pause),
               ]),
        Screen("review", text=review_text, back=False, cancel=False, buttons=[
            Button("Отправить анкету", "send", action=guarded(submit)),
            Button("Изменить ответ", "edit", go="edit"),
            Button(T.BACK, "prev", action=guarded(back_from_review)),
            Button(PAUSE, "pause", action=pause),
        ]),
        Screen("edit", text=EDIT_PICK, choices=edit_choices, save_as="pick", go=guarded(edit_pick), per_page=10,
               back=False, cancel=False, buttons=[Button("К проверке ответов", "review", go="review")]),
        Screen("done", text=lambda ctx: SENT_ANONYMOUS if ctx.data.get("sent_anonymous") else SENT,
               back=False, cancel=False, buttons=[Button("В меню", "menu", go="flow:menu")]),
    ],
)


# ---- scheduled jobs ------------------------------------------------------------------------------------


async def queue_campaign_messages(uow, *, now, quiet=None) -> int:
    """For the scheduler: invite newcomers to every running campaign and, once a week, remind those
    who have not finished. Idempotent (outbox keys), so it can run every hour; commits nothing."""
    queued = 0
    week = f"{now.isocalendar().year}w{now.isocalendar().week:02d}"
    for campaign in await S.running_campaigns(uow, now=now):
        info = await S.campaign_info(uow, campaign)
        closes = _date(campaign.closes_on)
        queued += await S.invite_cohort(uow, campaign, now=now, button=INVITE_BUTTON, quiet=quiet,
                                        text=INVITE_TEXT.format(title=info.title, closes=closes))
        if now.date() > campaign.opens_on + timedelta(days=6):
            queued += await S.remind_unfinished(uow, campaign, now=now, button=INVITE_BUTTON, round_key=week,
                                                quiet=quiet, text=REMIND_TEXT.format(title=info.title, closes=closes))
    return queued


# ---- coordinator: campaigns ---------------------------------------------------------------------------

QUESTIONNAIRE_CHOICES = {
    S.YOUNG_TEACHER: "Анкета для молодых педагогов (Приложение 3)",
    S.TEACHER_SUPPORT: "Анкета педагогического работника, анонимная (Приложение 2)",
}
STATUS_OPEN, STATUS_PLANNED, STATUS_CLOSED = "идёт", "ещё не началась", "закрыта"


def _date(day) -> str:
    return day.strftime("%d.%m.%Y")


async def coordinator(ctx: Ctx) -> Member:
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


def status_of(campaign, today) -> str:
    if campaign.closed_at is not None or today > campaign.closes_on:
        return STATUS_CLOSED
    return STATUS_OPEN if today >= campaign.opens_on else STATUS_PLANNED


async def _today(ctx: Ctx):
    member = await coordinator(ctx)
    return S.local_today(await ctx.uow.reference.municipality(member.municipality_id), ctx.now)


async def campaign_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    actor = await coordinator(ctx)
    today = await _today(ctx)
    return [
        Choice(str(info.campaign.id),
               shorten(f"{info.campaign.opens_on:%Y}: {QUESTIONNAIRE_CHOICES.get(info.code, info.title)}", 52)
               + f" ({status_of(info.campaign, today)})")
        for info in await S.campaigns_of(ctx.uow, actor)
    ]


async def campaigns_text(ctx: Ctx) -> str:
    if not await campaign_choices(ctx, None):
        return "Кампаний анкетирования ещё не было. Откройте первую: бот пригласит всех, кого касается опрос."
    return "Кампании анкетирования. Выберите, чтобы увидеть отклик по школам, напомнить или выгрузить ответы."


async def create_campaign(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    code = ctx.data.get("qcode", S.YOUNG_TEACHER)
    today = await _today(ctx)
    if ctx.data.get("window") == "now":
        opens_on, closes_on = today, today + timedelta(days=30)
    else:
        opens_on, closes_on = S.default_window(today)
    try:
        campaign = await S.open_campaign(ctx.uow, actor, questionnaire_code=code, now=ctx.now, opens_on=opens_on,
                                         closes_on=closes_on)
    except Conflict:
        ctx.say("Такая кампания на эти даты уже открыта.")
        return "list"
    info = await S.campaign_info(ctx.uow, campaign)
    invited = await S.invite_cohort(
        ctx.uow, campaign, now=ctx.now, button=INVITE_BUTTON,
        text=INVITE_TEXT.format(title=info.title, closes=_date(campaign.closes_on)),
    )
    ctx.say(f"Кампания открыта: {_date(opens_on)} – {_date(closes_on)}. Приглашений в очереди: {invited}.")
    ctx.data["cid"] = str(campaign.id)
    return "card"


async def card_text(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    try:
        rate = await S.response_rate(ctx.uow, actor, int(ctx.data["cid"]))
    except (NotFound, Forbidden):
        return "Эта кампания недоступна."
    info = await S.campaign_info(ctx.uow, rate.campaign)
    campaign = rate.campaign
    ctx.data["open"] = status_of(campaign, await _today(ctx)) != STATUS_CLOSED
    lines = [
        f"{info.title} (версия {info.version})",
        f"Сроки: {_date(campaign.opens_on)} – {_date(campaign.closes_on)}, {status_of(campaign, await _today(ctx))}",
        f"Ответили: {rate.submitted} из {rate.cohort} ({rate.rate:.0%})",
    ]
    if rate.schools:
        lines += ["", "По школам (ответили / начали / всего):"]
        lines += [f"• {s.name}: {s.submitted} / {s.started} / {s.cohort}" for s in rate.schools]
    return "\n".join(lines)


async def remind(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    campaign = await S.campaign_for(ctx.uow, actor, int(ctx.data["cid"]))
    info = await S.campaign_info(ctx.uow, campaign)
    queued = await S.remind_unfinished(
        ctx.uow, campaign, now=ctx.now, button=INVITE_BUTTON,
        text=REMIND_TEXT.format(title=info.title, closes=_date(campaign.closes_on)),
    )
    ctx.say(f"Напоминаний в очереди: {queued}." if queued else "Сегодня напоминать некому или уже напомнили.")
    return "card"


async def close(ctx: Ctx) -> str:
    actor = await coordinator(ctx)
    try:
        await S.close_campaign(ctx.uow, actor, int(ctx.data["cid"]), now=ctx.now)
    except Conflict:
        pass
    ctx.say("Кампания закрыта: ответы больше не принимаются, неотправленные приглашения отменены.")
    return "card"


def export_files(fmt: str):
    async def files(ctx: Ctx) -> list[OutFile]:
        actor = await coordinator(ctx)
        exported = await export_service.export_campaign(ctx.uow, actor, int(ctx.data["cid"]), fmt)
        return [OutFile(exported.name, exported.content, caption="Ответы кампании")]

    return files


# ---- coordinator: a teacher's answers year by year ---------------------------------------------------

YEARS_PICK = ("Чьи ответы сравнить по годам? Выберите педагога или напишите часть фамилии. "
              "Сначала — те, кто заполнял анкету больше одного раза.")
YEARS_NOBODY = "Анкету молодого педагога ещё никто не отправил: сравнивать пока нечего."
YEARS_GONE = "Эти ответы недоступны."
YEARS_FILE = "Все ответы рядом, столбец на кампанию"


async def respondent_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    people = await S.respondents(ctx.uow, await coordinator(ctx))
    if query:
        needle = fold(query.strip())
        people = [person for person in people if needle in fold(person.full_name)]
    return [Choice(str(person.member_id), shorten(f"{person.full_name} ({person.responses})", 52)) for person in people]


async def years_pick_text(ctx: Ctx) -> str:
    return YEARS_PICK if await S.respondents(ctx.uow, await coordinator(ctx)) else YEARS_NOBODY


async def _compared(ctx: Ctx) -> S.SideBySide | None:
    """The chosen teacher's answers side by side, built once per event (the text and the file
    share it); None when they are not the coordinator's to see."""
    if "_compared" not in ctx.__dict__:
        try:
            ctx.__dict__["_compared"] = await S.answers_side_by_side(
                ctx.uow, await coordinator(ctx), int(ctx.data.get("mid", 0)))
        except (NotFound, Forbidden):
            ctx.__dict__["_compared"] = None
    return ctx.__dict__["_compared"]


async def years_text(ctx: Ctx) -> str:
    """The answers that changed from one campaign to the next; the full table goes as a file."""
    compared = await _compared(ctx)
    if compared is None:
        return YEARS_GONE
    member = await ctx.uow.members.get(compared.member_id)
    name = member.full_name if member is not None else "Педагог"
    if len(compared.columns) < 2:
        when = compared.columns[0] if compared.columns else "—"
        return f"{name}: пока одна анкета ({when}), сравнивать не с чем. Ответы — в файле."
    changed = [(title, values) for _code, title, values in compared.rows if len(set(values)) > 1]
    lines = [f"{name}: анкета молодого педагога, {' → '.join(compared.columns)}."]
    if not changed:
        lines.append("Ответы не изменились.")
    else:
        lines.append(f"Изменились ответы на {len(changed)} из {len(compared.rows)} вопросов:")
        for title, values in changed:
            lines.append("")
            lines.append(title)
            lines += [f"• {column}: {value or '—'}" for column, value in zip(compared.columns, values)]
    lines += ["", "Все ответы рядом — в файле."]
    return "\n".join(lines)


async def years_files(ctx: Ctx) -> list[OutFile]:
    compared = await _compared(ctx)
    if compared is None:
        return []
    exported = export_service.side_by_side_xlsx(compared)
    return [OutFile(exported.name, exported.content, caption=YEARS_FILE)]


CAMPAIGNS = Flow(
    name="campaigns",
    start="list",
    title="кампании анкетирования",
    requires="member",
    roles=COORDINATORS,
    screens=[
        Screen("list", text=campaigns_text, choices=campaign_choices, save_as="cid", go="card", back=False,
               cancel=False, buttons=[
                   Button("Открыть новую кампанию", "new", go="new"),
                   Button("Ответы педагога по годам", "years", go="years"),
                   Button("В меню", "menu", go="flow:menu"),
               ]),
        Screen("years", text=years_pick_text, choices=respondent_choices, searchable=True, save_as="mid",
               go="compare"),
        Screen("compare", text=years_text, files=years_files, back=False, cancel=False, buttons=[
            Button("Другой педагог", "other", go="years"),
            Button("К списку кампаний", "list", go="list"),
        ]),
        Screen("new", text="Какую анкету проводим?", buttons=[
            *[Button(label, code, save={"qcode": code}, go="window") for code, label in QUESTIONNAIRE_CHOICES.items()],
        ]),
        Screen("window", text="Когда проводить опрос? Обычно его проводят в конце учебного года, в мае–июне.",
               buttons=[
                   Button("Май–июнь", "default", save={"window": "default"}, action=create_campaign),
                   Button("С сегодняшнего дня на 30 дней", "now", save={"window": "now"}, action=create_campaign),
               ]),
        Screen("card", text=card_text, back=False, cancel=False, buttons=[
            Button("Напомнить тем, кто не ответил", "remind", action=remind, show_if=lambda c: bool(c.data.get("open"))),
            Button("Выгрузить XLSX", "xlsx", go="xlsx"),
            Button("Выгрузить CSV", "csv", go="csv"),
            Button("Закрыть кампанию", "close", go="confirm_close", show_if=lambda c: bool(c.data.get("open"))),
            Button("К списку кампаний", "list", go="list"),
        ]),
        Screen("xlsx", text="Ответы кампании в файле XLSX: строка — анкета, столбец — вопрос.",
               files=export_files("xlsx"), back=False, cancel=False,
               buttons=[Button("К кампании", "card", go="card")]),
        Screen("csv", text="Ответы кампании в файле CSV (разделитель — точка с запятой).",
               files=export_files("csv"), back=False, cancel=False,
               buttons=[Button("К кампании", "card", go="card")]),
        Screen("confirm_close", text="Закрыть кампанию? Ответы больше не будут приниматься.", buttons=[
            Button("Да, закрыть", "yes", action=close),
            Button("Нет", "no", go="card"),
        ]),
    ],
)

FLOWS = [QUESTIONNAIRE, CAMPAIGNS]

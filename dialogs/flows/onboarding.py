"""First contact: greeting, the choice of municipality, consent to data processing, the public part."""

from __future__ import annotations

from dialogs.context import Ctx
from dialogs.model import Button, Choice, Flow, Screen
from dialogs.flows.common import municipality_of
from storage.services import consent as consent_service

GREETING = (
    "Здравствуйте! Я бот методической службы для молодых педагогов и наставников.\n"
    "Помогаю зарегистрироваться в программе поддержки, заполнить ежегодную анкету, сообщить "
    "о профессиональных затруднениях, найти наставника и не пропустить мероприятия."
)

CHOOSE_MUNICIPALITY = "Выберите ваш муниципалитет (район, город). Можно написать часть названия."

CONSENT_TEXT = """Согласие на обработку персональных данных

Оператор: {operator}.
Контакты оператора: {contacts}.

Что мы собираем: фамилию, имя, отчество; место работы, должность и предметную область; год начала педагогической работы и год рождения; идентификатор в Telegram или ВКонтакте; ответы на анкеты и сообщения о профессиональных затруднениях; сведения о наставничестве и участии в мероприятиях.

Зачем: методическое сопровождение молодых педагогов, подбор наставника, приглашения и напоминания о мероприятиях, обезличенная статистика для методической службы ({municipality}).

Срок хранения: пока вы пользуетесь ботом и ещё {retention} мес. после последней активности; затем данные удаляются автоматически.

Как отозвать: команда /forget или кнопка в профиле. Данные удаляются, в обезличенной статистике остаются только ответы без связи с вами.

Без согласия я не сохраняю о вас ничего, кроме идентификатора чата, и покажу только общую информацию."""

DECLINED = (
    "Хорошо, ваше решение принято. Я не сохраняю о вас ничего, кроме идентификатора чата.\n"
    "Вы можете читать справку, а дать согласие — в любой момент позже."
)

PUBLIC_HOME = (
    "Общая информация\n\n"
    "Бот методической службы помогает молодым педагогам и наставникам: анкета молодого педагога, "
    "сообщения о профессиональных дефицитах, подбор наставника, календарь мероприятий "
    "(«Умные каникулы», «Методический поезд», «Школа молодого педагога» и другие).\n\n"
    "Чтобы пользоваться ботом, нужна регистрация с согласием на обработку персональных данных."
)

HELP = """Что умеет бот

• /start — начать или продолжить;
• /menu — главное меню;
• /profile — ваш профиль и его изменение;
• /help — эта справка.

В каждом шаге есть кнопки «Назад» и «Отмена». Если бот перезапустится, вы продолжите с того же места.
Вопросы по программе — в вашу методическую службу."""


async def municipality_choices(ctx: Ctx, query: str | None) -> list[Choice]:
    municipalities = await ctx.uow.reference.municipalities()
    items = [Choice(str(m.id), m.name) for m in municipalities]
    if query:
        needle = query.casefold()
        items = [item for item in items if needle in item.label.casefold()]
    return items


async def route_start(ctx: Ctx) -> str | None:
    """Send a returning person to the menu, a consenting one to registration, a new one to consent."""
    if await consent_service.current_consent(ctx.uow, ctx.who) is not None:
        return "flow:menu" if await ctx.member() is not None else "flow:registration"
    args = ctx.data.pop("_start_args", "")
    if args.startswith("m_"):
        municipality = await ctx.uow.reference.municipality_by_code(args[2:])
        if municipality is not None:
            ctx.data["_muni"] = municipality.id
    if "_muni" not in ctx.data:
        municipalities = await ctx.uow.reference.municipalities()
        if len(municipalities) == 1:
            ctx.data["_muni"] = municipalities[0].id
    if "_muni" in ctx.data:
        ctx.say(GREETING)
        return "flow:consent"
    return None


async def consent_text(ctx: Ctx) -> str:
    municipality = await municipality_of(ctx)
    if municipality is None:
        return CHOOSE_MUNICIPALITY
    return CONSENT_TEXT.format(
        operator=municipality.operator_name,
        contacts=municipality.operator_contacts,
        municipality=municipality.name,
        retention=municipality.retention_months,
    )


async def give_consent(ctx: Ctx) -> str:
    municipality_id = ctx.data.get("_muni")
    if municipality_id is None:
        return "flow:start"
    await consent_service.give_consent(ctx.uow, ctx.who, municipality_id=int(municipality_id), now=ctx.now)
    ctx.forget_cached()
    ctx.say("Спасибо! Согласие сохранено.")
    after = ctx.data.pop("_after_consent", None)
    if await ctx.member() is not None:
        return f"flow:{after or 'menu'}"
    return "flow:registration"


async def need_municipality(ctx: Ctx) -> str | None:
    """The consent screen needs a municipality: without one, go and choose it."""
    if await municipality_of(ctx) is None:
        return "flow:start"
    return None


async def _drop_municipality(ctx: Ctx) -> str:
    ctx.data.pop("_muni", None)
    return "flow:start"


START = Flow(
    name="start",
    start="welcome",
    title="начало",
    screens=[
        Screen(
            "welcome",
            text=f"{GREETING}\n\n{CHOOSE_MUNICIPALITY}",
            on_enter=route_start,
            choices=municipality_choices,
            searchable=True,
            save_as="_muni",
            go="flow:consent",
            cancel=False,
            buttons=[Button("Общая информация", "public", go="flow:public")],
        ),
    ],
    on_cancel="flow:public",
)

CONSENT = Flow(
    name="consent",
    start="ask",
    title="согласие",
    screens=[
        Screen(
            "ask",
            text=consent_text,
            on_enter=need_municipality,
            buttons=[
                Button("Согласен(на)", "yes", action=give_consent),
                Button("Не согласен(на)", "no", go="declined"),
                Button("Другой муниципалитет", "other", action=_drop_municipality),
            ],
            cancel=False,
            back=False,
        ),
        Screen(
            "declined",
            text=DECLINED,
            buttons=[
                Button("Общая информация", "public", go="flow:public"),
                Button("Дать согласие", "again", go="ask"),
            ],
            cancel=False,
            back=False,
        ),
    ],
    on_cancel="flow:public",
)

PUBLIC = Flow(
    name="public",
    start="home",
    title="общая информация",
    screens=[
        Screen(
            "home",
            text=PUBLIC_HOME,
            buttons=[
                Button("📅 Мероприятия", "events", go="flow:events_public"),
                Button("Справка", "help", go="help"),
                Button("Зарегистрироваться", "register", go="flow:start"),
            ],
            cancel=False,
            back=False,
        ),
        Screen("help", text=HELP, buttons=[Button("Назад", "home", go="home")], cancel=False, back=False),
    ],
)

FLOWS = [START, CONSENT, PUBLIC]

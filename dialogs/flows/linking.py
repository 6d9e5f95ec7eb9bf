"""One person in both channels: a one-time code links a Telegram and a VK account to one profile.

A registered member gets a code in the menu («🔗 Связать Telegram и VK») and types it in the
other channel (`/link`, or the button `LINK_CODE_BUTTON` on the registration's first screen).
That account then shares the profile, answers, pairs and registrations, and the person
chooses which channel gets reminders. «Отвязать другой канал» undoes a link from the channel
that keeps the profile.
"""

from __future__ import annotations

from dialogs.context import Ctx
from dialogs.engine import Command
from dialogs.flows.common import MenuItem, menu_item
from dialogs.model import Button, Choice, Flow, InputError, Screen
from storage.models import Role
from storage.services import linking as linking_service
from storage.services.errors import Conflict, Forbidden, NotFound

CHANNELS = {"telegram": "Telegram", "vk": "ВКонтакте", "console": "консоль"}
OTHER_CHANNEL = {"telegram": "ВКонтакте", "vk": "Telegram"}

MENU_LABEL = "🔗 Связать Telegram и VK"
INTRO = (
    "Ботом можно пользоваться и в Telegram, и во ВКонтакте: профиль, анкеты, наставничество и "
    "мероприятия будут общими, а напоминания придут туда, куда вы выберете.\n\n"
    "Нажмите «Получить код», затем откройте бот в {other} и введите код там.\n"
    "Если вы уже зарегистрированы и там отдельно, объединить профили поможет координатор методической службы."
)
LINKED = "Ваш профиль подключён: {channels}.\nНапоминания и рассылки приходят в: {preferred}."
YOUR_CODE = "Ваш код связки: {code}"
CODE_HOWTO = (
    "Откройте бот в {other}. Если вы там ещё не начинали, отправьте /start и дайте согласие "
    "на обработку данных. Затем отправьте команду /link и введите этот код.\n\n"
    "Код действует 15 минут и подходит один раз. Никому его не сообщайте."
)
ASK_CODE = (
    "Введите код связки: шесть цифр, которые бот показал вам в другом канале "
    f"(Меню → «{MENU_LABEL}»)."
)
BAD_FORMAT = "Код связки — это шесть цифр, например 123456. Попробуйте ещё раз."
BAD_CODE = (
    "Код не подошёл: он неверный, уже использован или прошло больше 15 минут. "
    f"Получите новый код в другом канале: Меню → «{MENU_LABEL}»."
)
TOO_MANY = "Слишком много неверных попыток. Попробуйте через 15 минут."
SEPARATE = (
    "Этот аккаунт уже зарегистрирован отдельно. Объединить два профиля может координатор методической службы."
)
SAME_CHANNEL = "К профилю уже подключён другой аккаунт {channel}. Введите код в другом канале."
ALREADY = "Этот аккаунт уже связан с вашим профилем."
NEED_CONSENT = "Сначала нужно дать согласие на обработку персональных данных: отправьте /start."
LINKED_NOW = "Готово: этот аккаунт связан с профилем «{name}»."
ASK_PREFERRED = "Куда присылать напоминания и рассылки?"
PREFERRED_SAVED = "Напоминания и рассылки будут приходить в: {channel}."
KEEP_AS_IS = "Оставить как есть"
UNLINK_BUTTON = "Отвязать другой канал"
ASK_UNLINK = "Какой канал отвязать от профиля?"
CONFIRM_UNLINK = (
    "Отвязать {channel} от профиля «{name}»? Там бот начнёт заново, как с новым человеком; профиль, "
    "анкеты, наставничество и записи на мероприятия останутся здесь. Связать снова можно новым кодом."
)
UNLINKED = "Готово: {channel} отвязан от профиля. Напоминания и рассылки приходят в: {preferred}."

# For the registration's «Кто вы?» screen: a person already registered in the other channel.
LINK_CODE_BUTTON = Button("У меня есть код связки", "link", go="flow:link_redeem")

menu_item(MenuItem("link", MENU_LABEL, "flow:linking", frozenset(Role), order=85))


def channel(transport: str | None) -> str:
    return CHANNELS.get(transport or "", transport or "—")


def other_channel(ctx: Ctx) -> str:
    return OTHER_CHANNEL.get(ctx.who.transport, "Telegram или ВКонтакте")


async def _member(ctx: Ctx):
    member = await ctx.member()
    if member is None:
        raise Forbidden("not registered")
    return member


# ---- the member's side: get a code, choose the channel ----------------------------------------


async def load_channels(ctx: Ctx) -> None:
    member = await _member(ctx)
    ctx.data["channels"] = await linking_service.linked_transports(ctx.uow, member.id)
    return None


async def home_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    channels = ctx.data.get("channels") or await linking_service.linked_transports(ctx.uow, member.id)
    if len(channels) < 2:
        return INTRO.format(other=other_channel(ctx))
    return LINKED.format(
        channels=", ".join(channel(t) for t in channels),
        preferred=channel(member.preferred_transport or ctx.who.transport),
    )


async def issue_code(ctx: Ctx) -> None:
    try:
        code, _expires = await linking_service.issue_link_code(ctx.uow, ctx.who, now=ctx.now)
    except NotFound:
        raise Forbidden("not registered") from None
    ctx.say(YOUR_CODE.format(code=code))
    return None


async def channel_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    member = await _member(ctx)
    transports = await linking_service.linked_transports(ctx.uow, member.id)
    return [Choice(t, channel(t)) for t in transports]


def save_preference(then: str):
    """A `go` target: store the chosen channel, confirm, go on to `then`."""

    async def target(ctx: Ctx) -> str:
        member = await _member(ctx)
        transport = ctx.data.get("transport")
        try:
            await linking_service.set_preferred_transport(ctx.uow, member, str(transport), now=ctx.now)
        except Conflict:
            return "stay"
        ctx.say(PREFERRED_SAVED.format(channel=channel(transport)))
        return then

    return target


# ---- unlinking a channel ----------------------------------------------------------------------------


async def unlink_choices(ctx: Ctx, _query: str | None) -> list[Choice]:
    member = await _member(ctx)
    transports = await linking_service.linked_transports(ctx.uow, member.id)
    return [Choice(t, channel(t)) for t in transports if t != ctx.who.transport]


async def confirm_unlink_text(ctx: Ctx) -> str:
    member = await _member(ctx)
    return CONFIRM_UNLINK.format(channel=channel(ctx.data.get("unlink")), name=member.full_name)


async def unlink(ctx: Ctx) -> str:
    transport = str(ctx.data.get("unlink"))
    try:
        member = await linking_service.unlink_channel(ctx.uow, ctx.who, transport, now=ctx.now)
    except (NotFound, Conflict):
        return "home"  # already unlinked (a second tap, another channel was quicker)
    ctx.say(UNLINKED.format(channel=channel(transport), preferred=channel(member.preferred_transport or ctx.who.transport)))
    return "home"


LINKING = Flow(
    name="linking",
    start="home",
    title="связь Telegram и VK",
    requires="member",
    on_cancel="flow:menu",
    screens=[
        Screen(
            "home",
            text=home_text,
            on_enter=load_channels,
            buttons=[
                Button("Получить код", "code", go="code"),
                Button("Куда присылать напоминания", "prefer", go="prefer",
                       show_if=lambda ctx: len(ctx.data.get("channels", [])) > 1),
                Button(UNLINK_BUTTON, "unlink", go="unlink",
                       show_if=lambda ctx: len(ctx.data.get("channels", [])) > 1),
                Button("В меню", "menu", go="flow:menu"),
            ],
            back=False,
            cancel=False,
        ),
        Screen(
            "code",
            text=lambda ctx: CODE_HOWTO.format(other=other_channel(ctx)),
            on_enter=issue_code,
            buttons=[Button("Новый код", "again", go="code"), Button("В меню", "menu", go="flow:menu")],
            cancel=False,
        ),
        Screen("prefer", text=ASK_PREFERRED, choices=channel_choices, save_as="transport",
               go=save_preference("home")),
        Screen("unlink", text=ASK_UNLINK, choices=unlink_choices, save_as="unlink", go="confirm_unlink"),
        Screen("confirm_unlink", text=confirm_unlink_text, buttons=[
            Button("Да, отвязать", "yes", action=unlink),
            Button("Нет", "no", go="home"),
        ]),
    ],
)


# ---- the other side: type the code -------------------------------------------------------------


async def _redeem(ctx: Ctx, code: str) -> None:
    """Redeem or raise InputError with what to tell the person."""
    normalised = linking_service.normalise_code(code)
    if normalised is None:
        raise InputError(BAD_FORMAT)
    try:
        member = await linking_service.redeem_link_code(ctx.uow, ctx.who, normalised, now=ctx.now)
    except linking_service.TooManyAttempts:
        raise InputError(TOO_MANY) from None
    except linking_service.AlreadyLinked:
        raise InputError(ALREADY) from None
    except linking_service.SeparateProfile:
        raise InputError(SEPARATE) from None
    except linking_service.SameChannel:
        raise InputError(SAME_CHANNEL.format(channel=channel(ctx.who.transport))) from None
    except NotFound:
        raise InputError(BAD_CODE) from None
    except Forbidden:
        raise InputError(NEED_CONSENT) from None
    ctx.forget_cached()
    ctx.say(LINKED_NOW.format(name=member.full_name))


async def redeem_code(text: str, ctx: Ctx) -> str:
    await _redeem(ctx, text)
    return "linked"


async def start_redeem(ctx: Ctx) -> str | None:
    """Members go to their linking screen; a code given with the command (`/link 123456`) is tried at once."""
    args = ctx.data.pop("_start_args", "")
    if await ctx.member() is not None:
        return "flow:linking"
    if args:
        try:
            await _redeem(ctx, args)
        except InputError as error:
            ctx.say(str(error))
            return None
        return "prefer"
    return None


LINK_REDEEM = Flow(
    name="link_redeem",
    start="enter",
    title="связь аккаунтов",
    requires="consent",
    on_cancel="flow:start",
    screens=[
        Screen("enter", text=ASK_CODE, on_enter=start_redeem, input=redeem_code, go="prefer", max_length=20,
               back=False),
        Screen(
            "prefer",
            text=ASK_PREFERRED,
            choices=channel_choices,
            save_as="transport",
            go=save_preference("flow:menu"),
            buttons=[Button(KEEP_AS_IS, "keep", go="flow:menu")],
            back=False,
            cancel=False,
        ),
    ],
)

FLOWS = [LINKING, LINK_REDEEM]
COMMANDS = [Command("link", "flow:link_redeem", description="Связать Telegram и VK", in_sticky=True)]

"""A person's data rights: see and export everything stored (/mydata), delete it (/forget)."""

from __future__ import annotations

import json

from dialogs.context import Ctx
from dialogs.engine import Command
from dialogs.flows.common import MenuItem, menu_item
from dialogs.model import Button, Flow, OutFile, Screen
from storage.models import Role
from storage.services import consent as consent_service
from storage.services import personal_data

MYDATA_TEXT = (
    "Всё, что бот хранит о вас, — в двух файлах: JSON (для машин) и обычный текст.\n"
    "Удалить данные можно командой /forget."
)
NO_DATA = "О вас хранится только идентификатор чата и положение в диалоге. Других данных нет."
FORGET_ASK = (
    "Удалить ваши данные и отозвать согласие?\n\n"
    "Будут удалены профиль, связь с аккаунтами, наставнические пары, записи на мероприятия и ваши "
    "свободные ответы. Ответы на анкеты останутся только в обезличенной статистике, без связи с вами. "
    "Отменить удаление нельзя."
)
FORGOTTEN = (
    "Готово: ваши данные удалены, согласие отозвано. Запись об удалении (без персональных данных) "
    "сохранена, как требует закон. Если захотите вернуться — /start."
)

menu_item(MenuItem("mydata", "🔐 Мои данные", "flow:mydata", frozenset(Role), order=92))


async def export_files(ctx: Ctx) -> list[OutFile]:
    member = await ctx.member()
    if member is None:
        return []
    data = await personal_data.export_member(ctx.uow, member.id)
    as_json = json.dumps(data, ensure_ascii=False, indent=2).encode()
    as_text = personal_data.export_text(data).encode()
    return [OutFile("my-data.json", as_json), OutFile("my-data.txt", as_text)]


async def mydata_text(ctx: Ctx) -> str:
    return MYDATA_TEXT if await ctx.member() is not None else NO_DATA


async def forget(ctx: Ctx) -> str:
    account, member = await ctx.account(), await ctx.member()
    if member is not None:
        await personal_data.erase_member(ctx.uow, member.id, now=ctx.now, reason="self")
    elif account is not None:
        await consent_service.withdraw_all(ctx.uow, account.id, now=ctx.now)
        await personal_data.erase_account(ctx.uow, account.id, now=ctx.now, reason="self")
    ctx.forget_cached()
    ctx.data.clear()
    ctx.say(FORGOTTEN)
    return "flow:public"


MYDATA = Flow(
    name="mydata",
    start="show",
    title="мои данные",
    screens=[
        Screen("show", text=mydata_text, files=export_files,
               buttons=[Button("Удалить мои данные", "forget", go="flow:forget"), Button("В меню", "menu", go="flow:menu")],
               back=False, cancel=False),
    ],
)

FORGET = Flow(
    name="forget",
    start="ask",
    title="удаление данных",
    on_cancel="flow:menu",
    screens=[
        Screen("ask", text=FORGET_ASK, buttons=[
            Button("Да, удалить всё", "yes", action=forget),
            Button("Нет, оставить", "no", go="flow:menu"),
        ], back=False),
    ],
)

FLOWS = [MYDATA, FORGET]
COMMANDS = [
    Command("mydata", "flow:mydata", description="Мои данные"),
    Command("forget", "flow:forget", description="Удалить мои данные"),
]

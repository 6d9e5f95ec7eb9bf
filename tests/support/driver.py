"""Drive the dialog engine directly, as a person would: type text, press buttons by label."""

from __future__ import annotations

from dialogs.engine import DialogEngine
from dialogs.model import CommandEvent, ExternalId, OtherEvent, OutMessage, PressEvent, Reply, TextEvent


class EngineChat:
    """One person talking to the engine over the console transport (no network, real storage)."""

    def __init__(self, engine: DialogEngine, user_id: str | int, transport: str = "console") -> None:
        self.engine = engine
        self.who = ExternalId(transport, str(user_id), str(user_id))
        self.history: list[OutMessage] = []
        self.last: Reply = Reply()

    async def _send(self, event, update_id: str | None = None) -> Reply:
        self.last = await self.engine.handle(self.who, event, update_id=update_id)
        self.history.extend(self.last.messages)
        return self.last

    async def send(self, text: str) -> Reply:
        if text.startswith("/"):
            name, _, args = text[1:].partition(" ")
            return await self._send(CommandEvent(name, args.strip()))
        return await self._send(TextEvent(text))

    async def send_other(self, kind: str = "photo") -> Reply:
        return await self._send(OtherEvent(kind))

    def token_of(self, label: str, *, message: OutMessage | None = None) -> str:
        """The token of a button by label on the given (default: newest with buttons) message."""
        candidates = [message] if message else [m for m in reversed(self.history) if m.buttons]
        for candidate in candidates[:1]:
            for row in candidate.buttons:
                for button in row:
                    if button.label == label:
                        return button.token
        raise AssertionError(f"no button {label!r}; buttons: {self.buttons()}")

    async def press(self, label: str) -> Reply:
        return await self._send(PressEvent(self.token_of(label)))

    async def press_token(self, token: str) -> Reply:
        return await self._send(PressEvent(token))

    def buttons(self) -> list[str]:
        for message in reversed(self.history):
            if message.buttons:
                return [button.label for row in message.buttons for button in row]
        return []

    def last_text(self) -> str:
        return self.history[-1].text if self.history else ""

    def texts(self) -> list[str]:
        return [message.text for message in self.last.messages]


async def register_teacher(
    chat: EngineChat,
    *,
    name: str = "Иванова Мария Петровна",
    municipality: str = "Всеволожский район",
    role_label: str = "Молодой (начинающий) педагог",
    org_query: str = "СОШ № 2",
    org_label: str = "МОБУ «СОШ № 2», Кудрово",
    position: str = "Учитель-предметник",
    subject: str | None = "Филология",
    start_year: str = "2025",
    birth_year: str = "1999",
) -> None:
    """Register through the real flows (consent included) with synthetic data."""
    await chat.send("/start")
    await chat.press(municipality)
    await chat.press("Согласен(на)")
    await chat.press(role_label)
    await chat.send(name)
    await chat.press("Школа")
    await chat.send(org_query)
    await chat.press(org_label)
    await chat.press(position)
    if subject:
        await chat.press(subject)
    await chat.press(start_year)
    await chat.send(birth_year)
    await chat.press("Всё верно")
    assert chat.last_text().startswith("Главное меню"), chat.last_text()


async def register_coordinator(
    chat: EngineChat,
    db,
    clock,
    *,
    municipality_code: str = "vsevolozhsky",
    municipality: str = "Всеволожский район",
    name: str = "Кузнецова Елена Викторовна",
) -> None:
    """Create an invite as an admin would (CLI) and register with it through the real flows."""
    from storage.services.invites import create_invite

    async with db.unit() as uow:
        code = await create_invite(uow, role="coordinator", municipality_code=municipality_code, now=clock.now)
        await uow.commit()
    await chat.send("/start")
    await chat.press(municipality)
    await chat.press("Согласен(на)")
    await chat.press("У меня есть код приглашения")
    await chat.send(code)
    await chat.send(name)
    await chat.press("Всё верно")
    assert chat.last_text().startswith("Главное меню"), chat.last_text()

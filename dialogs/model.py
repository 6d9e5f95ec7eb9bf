"""The channel-neutral screen model: flows made of screens and buttons, user events, replies.

A flow is data: screens with texts and buttons, plus references to the async callables
(`Action`, `ChoiceSource`, `Validator`) that read or change storage. Adapters never see flows;
they turn platform updates into `Event`s and draw `Reply`s.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence, Union

if TYPE_CHECKING:
    from dialogs.context import Ctx


@dataclass(frozen=True)
class ExternalId:
    """A person in one channel: the transport, their user id there and the chat to answer in."""

    transport: str
    user_id: str
    chat_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.transport, self.user_id)


# ---- events: what the user did -------------------------------------------------------------


@dataclass(frozen=True)
class TextEvent:
    """A text message."""

    text: str


@dataclass(frozen=True)
class PressEvent:
    """A button press carrying the opaque token the engine issued."""

    token: str


@dataclass(frozen=True)
class CommandEvent:
    """A slash command such as /start, with its argument (a deep-link payload)."""

    name: str
    args: str = ""


@dataclass(frozen=True)
class OtherEvent:
    """Anything else: a photo, sticker, voice, file, location..."""

    kind: str


Event = Union[TextEvent, PressEvent, CommandEvent, OtherEvent]


# ---- replies: what the user sees -----------------------------------------------------------


@dataclass(frozen=True)
class OutButton:
    """A button as drawn: its label and the token pressing it sends back."""

    label: str
    token: str


@dataclass(frozen=True)
class OutFile:
    """A file sent with a message: a document (XLSX, ICS, JSON) or a photo (PNG chart)."""

    name: str
    content: bytes
    kind: str = "document"
    caption: str | None = None


@dataclass
class OutMessage:
    """One message: plain text (never markup), rows of buttons, attached files."""

    text: str
    buttons: list[list[OutButton]] = field(default_factory=list)
    files: list[OutFile] = field(default_factory=list)


@dataclass
class Reply:
    """Everything one event produces: messages in order and an optional short notice for a press."""

    messages: list[OutMessage] = field(default_factory=list)
    notice: str | None = None

    @property
    def last_text(self) -> str:
        return self.messages[-1].text if self.messages else ""


def encode_reply(chat_id: str, reply: Reply) -> str | None:
    """A reply and the chat it goes to as compact JSON, kept with its update until it is sent
    (None when it has no message: nothing to send). The notice is left out: it answers a press,
    which a resend after a restart can no longer answer."""
    if not reply.messages:
        return None
    messages = [
        [message.text, [[[button.label, button.token] for button in row] for row in message.buttons],
         [[item.name, base64.b64encode(item.content).decode(), item.kind, item.caption] for item in message.files]]
        for message in reply.messages
    ]
    return json.dumps([chat_id, messages], ensure_ascii=False, separators=(",", ":"))


def decode_reply(text: str) -> tuple[str, Reply]:
    """The chat and the reply `encode_reply` kept."""
    chat_id, messages = json.loads(text)
    return chat_id, Reply(messages=[
        OutMessage(
            message_text,
            [[OutButton(label, token) for label, token in row] for row in rows],
            [OutFile(name, base64.b64decode(content), kind, caption) for name, content, kind, caption in files],
        )
        for message_text, rows, files in messages
    ])


# ---- flow definitions ----------------------------------------------------------------------

Text = Union[str, Callable[["Ctx"], Union[str, Awaitable[str]]]]
Action = Callable[["Ctx"], Awaitable[Union[str, None]]]
ChoiceSource = Callable[["Ctx", Union[str, None]], Awaitable[Sequence["Choice"]]]
Validator = Callable[[str, "Ctx"], Any]
Target = Union[str, Callable[["Ctx"], Union[str, Awaitable[str]]], None]
Condition = Callable[["Ctx"], bool]


class InputError(ValueError):
    """Raised by a validator: its message is shown to the user, nothing is saved."""


@dataclass(frozen=True)
class Choice:
    """One item of a dynamic list (a school, a position, a year...)."""

    id: str
    label: str


@dataclass(frozen=True)
class Button:
    """A static button. On press: save values, run the action, then go where it says.

    `go` names a screen of the same flow, or `flow:<name>` to start another flow; an action
    may return such a target to override `go`.
    """

    label: str
    id: str
    go: Target = None
    save: Mapping[str, Any] | None = None
    action: Action | None = None
    show_if: Condition | None = None


@dataclass(frozen=True)
class Screen:
    """One step of a flow: text plus buttons, a (searchable, paginated) choice list or text input."""

    id: str
    text: Text
    buttons: Sequence[Button] = ()
    choices: ChoiceSource | None = None
    multi: bool = False
    exclusive: frozenset[str] = frozenset()
    searchable: bool = False
    input: Validator | None = None
    save_as: str | None = None
    go: Target = None
    on_enter: Action | None = None
    back: bool = True
    cancel: bool = True
    per_page: int = 8
    max_length: int = 1000
    files: Callable[["Ctx"], Awaitable[list[OutFile]]] | None = None


@dataclass(frozen=True)
class Flow:
    """A conversation: named screens, where it starts, and what it needs from the user.

    `requires` is "consent" (personal data may be collected) or "member" (registered);
    `roles` limits who may enter; a `sticky` flow asks the user to finish or cancel it
    before another command takes over; `on_cancel` is where «Отмена» leads.
    """

    name: str
    start: str
    screens: Sequence[Screen]
    title: str = ""
    requires: str | None = None
    roles: frozenset[str] | None = None
    sticky: bool = False
    on_cancel: str = "flow:menu"

    def screen(self, screen_id: str) -> Screen:
        for screen in self.screens:
            if screen.id == screen_id:
                return screen
        raise KeyError(f"flow {self.name} has no screen {screen_id}")

    def has_screen(self, screen_id: str) -> bool:
        return any(screen.id == screen_id for screen in self.screens)

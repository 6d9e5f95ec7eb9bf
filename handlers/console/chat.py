"""Talk to the bot in a terminal: the same flows, buttons shown as numbers."""

from __future__ import annotations

import asyncio
from typing import Callable

from dialogs.engine import DialogEngine
from dialogs.model import CommandEvent, ExternalId, PressEvent, Reply, TextEvent

QUIT = {"/quit", "/exit", "q", "выход"}


def draw(reply: Reply) -> tuple[str, list[str]]:
    """The reply as terminal text, and the tokens of the numbered buttons of its last keyboard."""
    lines: list[str] = []
    tokens: list[str] = []
    for message in reply.messages:
        lines.append(message.text)
        lines.extend(f"  [файл: {file.name}, {len(file.content)} байт]" for file in message.files)
        if message.buttons:
            tokens = []
            for row in message.buttons:
                cells = []
                for button in row:
                    tokens.append(button.token)
                    cells.append(f"[{len(tokens)}] {button.label}")
                lines.append("  " + "   ".join(cells))
        lines.append("")
    return "\n".join(lines), tokens


async def console_chat(
    engine: DialogEngine,
    user_id: str = "console-demo",
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> None:
    """Run a conversation until the person types /quit (or input ends)."""
    who = ExternalId("console", user_id, user_id)
    write("Консоль бота. Цифра — нажать кнопку, текст — ответить, /quit — выйти.\n")
    text, tokens = draw(await engine.handle(who, CommandEvent("start")))
    write(text)
    while True:
        try:
            line = await asyncio.to_thread(read, "> ")
        except (EOFError, KeyboardInterrupt):
            break
        line = line.strip()
        if line in QUIT:
            break
        if line.isdigit() and 1 <= int(line) <= len(tokens):
            event = PressEvent(tokens[int(line) - 1])
        elif line.startswith("/"):
            name, _, args = line[1:].partition(" ")
            event = CommandEvent(name.lower(), args.strip())
        else:
            event = TextEvent(line)
        reply = await engine.handle(who, event)
        text, new_tokens = draw(reply)
        tokens = new_tokens or tokens
        write(text)
    write("До свидания!")


"""Draw a neutral `Reply` in VK: texts split to 9,000 characters, keyboards within VK's limits, files.

VK limits (dev.vk.com, "Клавиатура для ботов" and messages.send): an inline keyboard holds at
most 10 buttons in 6 rows, a standard one 40 in 10 rows, at most 5 buttons in a row; a label
is at most 40 characters and a payload 255; a message is at most 9,000 characters. A screen
with more buttons than fit is spread over several messages, never sent over the limit.

Every `messages.send` carries a `random_id` derived from the update (or outbox key) and the
part's index, so sending the same reply again after a failure never doubles a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from handlers.text_split import split_text as split_units
from dialogs.model import OutButton, OutFile, OutMessage, Reply
from handlers.vk.client import VkClient, classify_vk_error
from scheduler.broadcaster import SlowDown, Transient, Unreachable

log = logging.getLogger(__name__)

TEXT_LIMIT = 9000  # messages.send `message`
LABEL_LIMIT = 40
PAYLOAD_LIMIT = 255
ROW_LIMIT = 5
INLINE_ROWS, INLINE_BUTTONS = 6, 10
STANDARD_ROWS, STANDARD_BUTTONS = 10, 40
SNACKBAR_LIMIT = 90  # sendMessageEventAnswer show_snackbar text
# A message with buttons but no text of its own (the rest of a long keyboard); VK needs some text.
CONTINUATION = "…"
EMPTY_STANDARD_KEYBOARD = json.dumps({"one_time": False, "buttons": []})


@dataclass(frozen=True)
class ClientCaps:
    """What the person's VK client can draw (from `client_info` of their last message)."""

    keyboard: bool = True
    inline: bool = True
    callback: bool = True

    @classmethod
    def from_client_info(cls, info: Any) -> "ClientCaps":
        if not isinstance(info, dict):
            return cls()
        actions = info.get("button_actions")
        return cls(
            keyboard=bool(info.get("keyboard", True)),
            inline=bool(info.get("inline_keyboard", True)),
            callback=isinstance(actions, list) and "callback" in actions,
        )


@dataclass(frozen=True)
class VkPart:
    """One messages.send call: text, an optional keyboard (JSON) and an optional file to attach."""

    text: str
    keyboard: str | None = None
    file: OutFile | None = None


# ---- pure helpers ----------------------------------------------------------------------------


def random_id(key: str, index: int) -> int:
    """A stable, positive 31-bit id for part `index` of the message(s) identified by `key`."""
    digest = hashlib.sha256(f"{key}#{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1


def short_label(label: str) -> str:
    """A label within VK's 40 characters, cut with «…» when longer."""
    label = " ".join(label.split()) or CONTINUATION
    return label if len(label) <= LABEL_LIMIT else label[: LABEL_LIMIT - 1] + "…"


def payload_of(token: str) -> str:
    """The button payload carrying the engine's token."""
    return json.dumps({"t": token}, ensure_ascii=False, separators=(",", ":"))


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Parts within `limit` UTF-16 units (VK may count an emoji as two), cut at safe points."""
    return [part for part in split_units(text, limit) if part.strip()] or [CONTINUATION]


def _button(button: OutButton, caps: ClientCaps) -> dict[str, Any] | None:
    payload = payload_of(button.token)
    if len(payload) > PAYLOAD_LIMIT:  # engine tokens are ~10 characters; never send a bad keyboard
        log.warning("vk: a button payload over %d characters was dropped", PAYLOAD_LIMIT)
        return None
    kind = "callback" if caps.callback else "text"
    return {"action": {"type": kind, "label": short_label(button.label), "payload": payload}}


def _compact(rows: list[list[dict]], max_rows: int) -> list[list[dict]]:
    """Merge neighbouring short rows (smallest pairs first) until at most `max_rows` remain."""
    rows = [list(row) for row in rows]
    while len(rows) > max_rows:
        best: tuple[int, int] | None = None
        for i in range(len(rows) - 1):
            size = len(rows[i]) + len(rows[i + 1])
            if size <= ROW_LIMIT and (best is None or size < best[0]):
                best = (size, i)
        if best is None:
            break
        i = best[1]
        rows[i : i + 2] = [rows[i] + rows[i + 1]]
    return rows


def _chunks(rows: list[list[dict]], max_buttons: int, max_rows: int) -> list[list[list[dict]]]:
    """Rows spread over keyboards of at most `max_buttons` buttons and `max_rows` rows."""
    groups: list[list[list[dict]]] = []
    current: list[list[dict]] = []
    count = 0
    for row in rows:
        if current and count + len(row) > max_buttons:
            groups.append(current)
            current, count = [], 0
        current.append(row)
        count += len(row)
    if current:
        groups.append(current)
    result: list[list[list[dict]]] = []
    for group in groups:
        group = _compact(group, max_rows)
        while len(group) > max_rows:  # only if rows could not be merged; still never over the limit
            result.append(group[:max_rows])
            group = group[max_rows:]
        result.append(group)
    return result


def keyboards(rows: Sequence[Sequence[OutButton]], caps: ClientCaps = ClientCaps()) -> list[str]:
    """The keyboards (JSON) that draw these button rows; several when one would be over VK's limits."""
    drawn: list[list[dict]] = []
    for row in rows:
        buttons = [b for b in (_button(button, caps) for button in row) if b is not None]
        drawn += [buttons[i : i + ROW_LIMIT] for i in range(0, len(buttons), ROW_LIMIT)]
    if not drawn:
        return []
    if caps.inline:
        return [json.dumps({"inline": True, "buttons": chunk}, ensure_ascii=False)
                for chunk in _chunks(drawn, INLINE_BUTTONS, INLINE_ROWS)]
    # A standard keyboard replaces the previous one, so only one can be shown: keep what fits.
    first = _chunks(drawn, STANDARD_BUTTONS, STANDARD_ROWS)[0]
    if sum(map(len, first)) < sum(map(len, drawn)):
        log.warning("vk: a screen had more buttons than a standard keyboard holds; the rest were dropped")
    return [json.dumps({"one_time": False, "buttons": first}, ensure_ascii=False)]


def plan_message(message: OutMessage, caps: ClientCaps = ClientCaps()) -> list[VkPart]:
    """The messages.send calls for one message: text parts, keyboard overflow, then files."""
    text = message.text
    if message.buttons and not caps.keyboard:  # a client without keyboards: list the choices
        text += "\n\n" + "\n".join(f"• {button.label}" for row in message.buttons for button in row)
    texts = split_text(text or CONTINUATION)
    boards = keyboards(message.buttons, caps) if caps.keyboard else []
    parts = [VkPart(part) for part in texts[:-1]]
    parts.append(VkPart(texts[-1], boards[0] if boards else None))
    parts += [VkPart(CONTINUATION, board) for board in boards[1:]]
    parts += [VkPart(split_text(file.caption)[0] if file.caption else "", file=file) for file in message.files]
    return parts


def plan_reply(reply: Reply, caps: ClientCaps = ClientCaps()) -> list[VkPart]:
    """All messages.send calls for a reply, in order."""
    parts = [part for message in reply.messages for part in plan_message(message, caps)]
    if parts and caps.keyboard and not caps.inline and not reply.messages[-1].buttons:
        last = parts[-1]  # hide the standard keyboard of the previous screen
        parts[-1] = VkPart(last.text, EMPTY_STANDARD_KEYBOARD, last.file)
    return parts


def snackbar_text(notice: str | None) -> str | None:
    """A notice shortened to the snackbar's 90 characters."""
    if not notice:
        return None
    notice = " ".join(notice.split())
    return notice if len(notice) <= SNACKBAR_LIMIT else notice[: SNACKBAR_LIMIT - 1] + "…"


# ---- sending ---------------------------------------------------------------------------------


async def send_part(client: VkClient, peer_id: int | str, part: VkPart, *, random_id: int) -> int:
    """Upload the part's file if any, then messages.send it; vk-api errors propagate."""
    attachment = await client.upload(peer_id, part.file) if part.file is not None else None
    return await client.send_message(
        peer_id, part.text, random_id=random_id, keyboard=part.keyboard, attachment=attachment
    )


@dataclass(frozen=True)
class ReplySent:
    """What became of a reply: the parts that went out, and whether it is settled (every part
    sent or refused for good). An unsettled reply stopped at a part VK may take later (network,
    server, rate limit): sent again, under the same random ids, it completes without duplicates."""

    parts: int
    settled: bool = True


async def send_reply(
    client: VkClient,
    peer_id: int | str,
    reply: Reply,
    *,
    key: str,
    caps: ClientCaps = ClientCaps(),
    attempts: int = 3,
    backoff: float = 0.5,
) -> ReplySent:
    """Send a reply to a person, in order.

    A part that fails with a network or server error is retried (`attempts` in all) with the
    same `random_id`, so VK stores it once; if it still fails, the reply stops there, unsettled.
    A recipient who forbade messages stops the reply for good; any other refusal skips just
    that part. Nothing is raised for platform errors.
    """
    sent = 0
    for index, part in enumerate(plan_reply(reply, caps)):
        rid = random_id(key, index)
        for attempt in range(1, attempts + 1):
            try:
                await send_part(client, peer_id, part, random_id=rid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = classify_vk_error(exc)
                if isinstance(error, (Transient, SlowDown)):
                    if attempt < attempts:
                        await asyncio.sleep(backoff * 2 ** (attempt - 1))
                        continue
                    log.warning("vk: reply part %d not sent (%s); the rest waits", index, error)
                    return ReplySent(sent, settled=False)
                if isinstance(error, Unreachable):
                    log.info("vk: peer %s cannot be written to (%s)", _masked(peer_id), error)
                    return ReplySent(sent)
                log.warning("vk: reply part %d not sent: %s", index, error)
                break
            else:
                sent += 1
                break
    return ReplySent(sent)


def _masked(peer_id: int | str) -> str:
    text = str(peer_id)
    return "*" * max(0, len(text) - 4) + text[-4:]

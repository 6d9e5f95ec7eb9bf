"""Telegram Bot API emulator for end-to-end tests.

Wraps ``tests/support/telegram_emulator/launcher.js`` (npm ``telegram-test-api``
4.2.1 plus fixes for aiogram 3) and gives tests a user-side client.

Typical use (the lead wires the fixture in ``tests/conftest.py``)::

    async with running_emulator() as emu:
        bot = emu.make_bot()
        async with emu.polling(dp, bot):
            chat = emu.chat(1001)
            await chat.send("/start")
            reply = await chat.wait_reply()
            await chat.press("Далее")

Everything here is loop-agnostic: the node process is managed with
``subprocess`` (not asyncio), and the aiohttp session is re-created when the
running event loop changes, so the emulator may be function- or
session-scoped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import itertools
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

LAUNCHER_DIR = Path(__file__).resolve().parent / "telegram_emulator"
LAUNCHER_JS = LAUNCHER_DIR / "launcher.js"
DEFAULT_TOKEN = "123456:TEST-token"
DEFAULT_TIMEOUT = 5.0
POLL_INTERVAL = 0.02

__all__ = [
    "DEFAULT_TOKEN",
    "BotFile",
    "BotMessage",
    "EmulatorChat",
    "EmulatorError",
    "TelegramEmulator",
    "ensure_node_modules",
    "running_emulator",
]


class EmulatorError(RuntimeError):
    """The emulator could not be installed/started or a control call failed."""


# --------------------------------------------------------------------------- setup
_install_lock = threading.Lock()


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise EmulatorError(
            f"`{name}` was not found on PATH. The Telegram emulator needs Node.js (>=18) and npm: "
            f"install them (e.g. `apt-get install nodejs npm`) and run "
            f"`npm ci` in {LAUNCHER_DIR}."
        )
    return path


def ensure_node_modules() -> Path:
    """Install the launcher's npm dependencies if ``node_modules`` is missing.

    Runs ``npm ci --no-audit --no-fund`` (``npm install`` when there is no
    lock file) in the launcher directory. Safe to call from several processes
    (pytest-xdist): installs are serialised with a file lock.
    """
    _require_tool("node")
    marker = LAUNCHER_DIR / "node_modules" / "telegram-test-api" / "package.json"
    if marker.exists():
        return LAUNCHER_DIR
    npm = _require_tool("npm")
    lock_path = Path(tempfile.gettempdir()) / f"tg-emulator-npm-{hashlib.sha1(str(LAUNCHER_DIR).encode()).hexdigest()[:12]}.lock"
    with _install_lock, _file_lock(lock_path):
        if marker.exists():
            return LAUNCHER_DIR
        has_lock = (LAUNCHER_DIR / "package-lock.json").exists()
        cmd = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
        proc = subprocess.run(
            cmd,
            cwd=LAUNCHER_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0 or not marker.exists():
            raise EmulatorError(
                f"`{' '.join(cmd)}` failed in {LAUNCHER_DIR} (exit {proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
    return LAUNCHER_DIR


@contextlib.contextmanager
def _file_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- data
@dataclasses.dataclass
class BotFile:
    """A document or photo the bot sent (bytes included)."""

    file_id: str
    file_name: str | None
    mime_type: str | None
    file_size: int
    data: bytes
    caption: str | None = None  # plain caption (HTML stripped)
    message_id: int | None = None
    width: int | None = None
    height: int | None = None
    url: str | None = None

    @classmethod
    def _from(cls, raw: dict[str, Any], msg: BotMessage) -> BotFile:
        return cls(
            file_id=raw["file_id"],
            file_name=raw.get("file_name"),
            mime_type=raw.get("mime_type"),
            file_size=int(raw.get("file_size") or 0),
            data=base64.b64decode(raw.get("data_b64") or ""),
            caption=msg.plain_caption,
            message_id=msg.message_id,
            width=raw.get("width"),
            height=raw.get("height"),
            url=raw.get("url"),
        )


@dataclasses.dataclass
class BotMessage:
    """One message the bot sent to a chat, in its current (possibly edited) state."""

    message_id: int
    chat_id: int | str
    method: str
    text: str | None  # raw text as sent (may contain HTML)
    plain_text: str | None  # text with HTML tags stripped and entities unescaped
    caption: str | None
    plain_caption: str | None
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    document: dict[str, Any] | None
    photo: dict[str, Any] | None
    edited: bool
    edit_count: int
    deleted: bool
    date: int  # unix seconds
    date_ms: float
    seq: int
    history: list[dict[str, Any]]
    params: dict[str, Any]
    raw: dict[str, Any] = dataclasses.field(repr=False)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> BotMessage:
        return cls(
            message_id=raw["message_id"],
            chat_id=raw["chat_id"],
            method=raw["method"],
            text=raw.get("text"),
            plain_text=raw.get("plain_text"),
            caption=raw.get("caption"),
            plain_caption=raw.get("plain_caption"),
            parse_mode=raw.get("parse_mode"),
            reply_markup=raw.get("reply_markup"),
            document=raw.get("document"),
            photo=raw.get("photo"),
            edited=bool(raw.get("edited")),
            edit_count=int(raw.get("edit_count") or 0),
            deleted=bool(raw.get("deleted")),
            date=int(raw.get("date") or 0),
            date_ms=float(raw.get("date_ms") or 0),
            seq=int(raw.get("seq") or 0),
            history=list(raw.get("history") or []),
            params=dict(raw.get("params") or {}),
            raw=raw,
        )

    @property
    def content(self) -> str:
        """Plain text, or plain caption for media, or ''."""
        if self.plain_text is not None:
            return self.plain_text
        return self.plain_caption or ""

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        if self.reply_markup and "inline_keyboard" in self.reply_markup:
            return self.reply_markup["inline_keyboard"]
        return []

    @property
    def buttons(self) -> list[str]:
        """Labels of the inline keyboard, flattened row by row."""
        return [b.get("text", "") for row in self.inline_keyboard for b in row]

    @property
    def reply_keyboard(self) -> list[str]:
        """Labels of a ReplyKeyboardMarkup attached to this message (flattened)."""
        if not self.reply_markup or "keyboard" not in self.reply_markup:
            return []
        return [b if isinstance(b, str) else b.get("text", "") for row in self.reply_markup["keyboard"] for b in row]

    def button(self, label: str) -> dict[str, Any] | None:
        for row in self.inline_keyboard:
            for b in row:
                if b.get("text") == label:
                    return b
        return None

    @property
    def document_file(self) -> BotFile | None:
        return BotFile._from(self.document, self) if self.document else None

    @property
    def photo_file(self) -> BotFile | None:
        return BotFile._from(self.photo, self) if self.photo else None


# --------------------------------------------------------------------------- emulator
class TelegramEmulator:
    """A running ``launcher.js`` (Telegram Bot API emulator) on 127.0.0.1."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        startup_timeout: float = 20.0,
        store_timeout: int = 3600,
    ) -> None:
        self.token = token
        self.startup_timeout = startup_timeout
        self.store_timeout = store_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._user_ids = itertools.count(10_000)

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EmulatorError("emulator is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start_sync(self) -> TelegramEmulator:
        """Start the node process and wait for ``READY`` (blocking)."""
        if self.running:
            return self
        ensure_node_modules()
        last_error: Exception | None = None
        for _attempt in range(3):
            try:
                self._spawn(_free_port())
                return self
            except EmulatorError as e:  # port race: retry with another port
                last_error = e
                self._kill()
        raise EmulatorError(f"telegram emulator failed to start: {last_error}")

    def _spawn(self, port: int) -> None:
        node = _require_tool("node")
        self._output.clear()
        proc = subprocess.Popen(
            [node, str(LAUNCHER_JS), "--port", str(port), "--store-timeout", str(self.store_timeout)],
            cwd=LAUNCHER_DIR,
            stdin=subprocess.PIPE,  # launcher exits when this pipe closes (i.e. when we die)
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._proc = proc
        ready = threading.Event()

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self._output.append(line.rstrip("\n"))
                if line.startswith(f"READY {port}"):
                    ready.set()
            ready.set()  # EOF: process died

        self._reader = threading.Thread(target=reader, name=f"tg-emulator-{port}", daemon=True)
        self._reader.start()
        if not ready.wait(self.startup_timeout) or proc.poll() is not None:
            out = "\n".join(self._output)
            raise EmulatorError(f"launcher did not print READY on port {port}. Output:\n{out}")
        self.port = port

    def stop_sync(self) -> None:
        """Stop the node process (blocking). Idempotent."""
        self._kill()
        self.port = None

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin:
                proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        if self._reader is not None:
            self._reader.join(timeout=1)
            self._reader = None

    async def start(self) -> TelegramEmulator:
        await asyncio.to_thread(self.start_sync)
        return self

    async def stop(self) -> None:
        await self._close_http()
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> TelegramEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def output(self) -> str:
        """Recent stdout/stderr of the node process (for debugging)."""
        return "\n".join(self._output)

    # ------------------------------------------------------------ http
    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.closed or self._http_loop is not loop:
            # a session is bound to its event loop: make a new one when the loop changes
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            self._http_loop = loop
        return self._http

    async def _close_http(self) -> None:
        http, self._http = self._http, None
        if http is not None and not http.closed:
            try:
                if self._http_loop is asyncio.get_running_loop():
                    await http.close()
            except RuntimeError:
                pass

    async def _request(self, verb: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        http = await self._session()
        url = self.base_url + path
        async with http.request(verb, url, json=payload) as resp:
            try:
                body = await resp.json(content_type=None)
            except Exception as e:  # noqa: BLE001
                raise EmulatorError(f"{verb} {path}: HTTP {resp.status}, not JSON") from e
        if resp.status != 200 or not body.get("ok"):
            raise EmulatorError(f"{verb} {path} failed: HTTP {resp.status} {body}")
        return body

    async def control(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        """POST to a ``/_control/...`` route and return its ``result``."""
        return (await self._request("POST", path, payload or {}))["result"]

    # ------------------------------------------------------------ aiogram helpers
    def make_bot(self, **kwargs: Any):  # -> aiogram.Bot
        """An aiogram ``Bot`` pointed at this emulator (extra kwargs go to ``Bot``)."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(self.token, session=session, **kwargs)

    @contextlib.asynccontextmanager
    async def polling(self, dp: Any, *bots: Any, **kwargs: Any) -> AsyncIterator[asyncio.Task[Any]]:
        """Run ``dp.start_polling(*bots)`` as a task for the duration of the block.

        On exit stops polling and re-raises anything ``start_polling`` raised.
        ``handle_signals=False`` is forced.
        """
        kwargs["handle_signals"] = False
        task = asyncio.create_task(dp.start_polling(*bots, **kwargs))
        # let start_polling take its lock so that stop_polling() works
        for _ in range(100):
            if task.done() or dp._running_lock.locked():
                break
            await asyncio.sleep(0)
        try:
            yield task
        finally:
            if not task.done():
                try:
                    await dp.stop_polling()
                except RuntimeError:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)

    # ------------------------------------------------------------ control API
    async def inject_failure(
        self,
        method: str,
        error_code: int = 429,
        *,
        chat_id: int | str | None = None,
        retry_after: int | None = None,
        description: str | None = None,
        times: int | None = 1,
    ) -> dict[str, Any]:
        """Make the next ``times`` matching bot calls fail like Telegram would.

        ``method`` is a Bot API method name (case-insensitive) or ``"*"`` for any
        method except getUpdates. ``times=None`` fails forever (until
        ``reset_failures``). 429 answers carry ``parameters.retry_after``
        (default 1); 403 defaults to "Forbidden: bot was blocked by the user".
        """
        payload: dict[str, Any] = {
            "method": method,
            "error_code": error_code,
            "times": -1 if times is None else times,
        }
        if chat_id is not None:
            payload["chat_id"] = chat_id
        if retry_after is not None:
            payload["retry_after"] = retry_after
        if description is not None:
            payload["description"] = description
        return await self.control("/_control/fail", payload)

    async def reset_failures(self) -> None:
        await self.control("/_control/reset", {})

    async def reset_stats(self) -> None:
        """Clear injected failures and the call statistics."""
        await self.control("/_control/reset", {"stats": True})

    async def clear(self) -> None:
        """Forget everything (messages, files, callbacks, failures, stats)."""
        await self.control("/_control/clear", {})

    async def stats(self) -> dict[str, Any]:
        """``{total, by_method, by_chat, calls: [{method, chat_id, t_ms, status, injected?}], failures, chat_actions}``.

        ``t_ms`` is wall-clock epoch milliseconds (sub-ms precision).
        """
        return (await self._request("GET", "/_control/stats"))["result"]

    async def calls(self, method: str | None = None, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Recorded bot API calls, optionally filtered by method and chat."""
        res = (await self.stats())["calls"]
        if method is not None:
            res = [c for c in res if c["method"].lower() == method.lower()]
        if chat_id is not None:
            res = [c for c in res if str(c.get("chat_id")) == str(chat_id)]
        return res

    async def bot_state(self) -> dict[str, Any]:
        """``{commands: {scope_key: [...]}, menu_buttons: {...}, allowed_updates}``."""
        return await self.control("/_control/botState", {"token": self.token})

    async def commands(self) -> list[dict[str, str]]:
        """Commands set with setMyCommands for the default scope/language."""
        state = await self.bot_state()
        return state["commands"].get('["default","","",""]', [])

    async def all_messages(self, *, include_deleted: bool = False) -> list[BotMessage]:
        """Every message the bot sent, to any chat."""
        body = await self._request(
            "POST", "/_control/chatLog", {"token": self.token, "includeDeleted": include_deleted}
        )
        return [BotMessage.from_raw(m) for m in body["result"]]

    def chat(
        self,
        user_id: int | None = None,
        first_name: str = "Тест",
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = "ru",
    ) -> EmulatorChat:
        """The private chat of a (new) user with the bot. ``user_id`` defaults to a fresh id."""
        if user_id is None:
            user_id = next(self._user_ids)
        return EmulatorChat(
            self,
            user_id=user_id,
            first_name=first_name,
            username=username,
            last_name=last_name,
            language_code=language_code,
        )


# --------------------------------------------------------------------------- user side
Predicate = Callable[[list[BotMessage]], Any]


class EmulatorChat:
    """The user's side of a private chat with the bot."""

    def __init__(
        self,
        emulator: TelegramEmulator,
        *,
        user_id: int,
        first_name: str = "Тест",
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "ru",
    ) -> None:
        self.emulator = emulator
        self.user_id = user_id
        self.chat_id = user_id
        self.first_name = first_name
        self.username = username
        self.last_name = last_name
        self.language_code = language_code
        self._cursor = 0  # emulator seq at our last action
        self._file_n = itertools.count(1)

    def __repr__(self) -> str:
        return f"EmulatorChat(user_id={self.user_id}, first_name={self.first_name!r})"

    # ------------------------------------------------------------ identity
    @property
    def user(self) -> dict[str, Any]:
        u: dict[str, Any] = {"id": self.user_id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            u["last_name"] = self.last_name
        if self.username:
            u["username"] = self.username
        if self.language_code:
            u["language_code"] = self.language_code
        return u

    @property
    def chat_object(self) -> dict[str, Any]:
        c: dict[str, Any] = {"id": self.chat_id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            c["last_name"] = self.last_name
        if self.username:
            c["username"] = self.username
        return c

    # ------------------------------------------------------------ user actions
    async def send_update(self, fields: dict[str, Any], files: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
        """Send a raw user message; ``fields`` are merged into {from, chat, date}.

        Returns ``{update_id, message_id, seq, message}``.
        """
        message = {"from": self.user, "chat": self.chat_object, "date": int(time.time()), **fields}
        res = await self.emulator.control(
            "/_control/userMessage", {"token": self.emulator.token, "message": message, "files": list(files)}
        )
        self._cursor = res["seq"]
        return res

    async def send(self, text: str) -> int:
        """Send a text message; ``/cmd args`` is sent with a bot_command entity. Returns message_id."""
        fields: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            cmd = text.split(maxsplit=1)[0]
            fields["entities"] = [{"type": "bot_command", "offset": 0, "length": _utf16_len(cmd)}]
        return (await self.send_update(fields))["message_id"]

    async def send_photo(self, caption: str | None = None, data: bytes = b"\x89PNG fake") -> int:
        """Send a photo (no text). Returns message_id."""
        n = next(self._file_n)
        fid = f"AgACAgIAAxkBAAIuser{self.user_id}_{n}"
        sizes = [
            {"file_id": f"{fid}_s", "file_unique_id": f"AQADu{self.user_id}_{n}s", "width": 90, "height": 90,
             "file_size": len(data)},
            {"file_id": fid, "file_unique_id": f"AQADu{self.user_id}_{n}", "width": 800, "height": 600,
             "file_size": len(data)},
        ]
        fields: dict[str, Any] = {"photo": sizes}
        if caption:
            fields["caption"] = caption
        files = [
            {"file_id": s["file_id"], "file_unique_id": s["file_unique_id"], "data_b64": base64.b64encode(data).decode(),
             "kind": "photos", "file_name": "photo.jpg", "mime_type": "image/jpeg"}
            for s in sizes
        ]
        return (await self.send_update(fields, files))["message_id"]

    async def send_sticker(self, emoji: str = "👍") -> int:
        """Send a sticker (no text). Returns message_id."""
        n = next(self._file_n)
        sticker = {
            "file_id": f"CAACAgIAAxkBAAIuser{self.user_id}_{n}",
            "file_unique_id": f"AgADu{self.user_id}_{n}",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "EmulatorStickers",
        }
        return (await self.send_update({"sticker": sticker}))["message_id"]

    async def send_document(
        self,
        file_name: str,
        data: bytes,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
    ) -> int:
        """Send a document; the bot can download it (getFile + file URL). Returns message_id."""
        n = next(self._file_n)
        doc = {
            "file_id": f"BQACAgIAAxkBAAIuser{self.user_id}_{n}",
            "file_unique_id": f"AgADd{self.user_id}_{n}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        fields: dict[str, Any] = {"document": doc}
        if caption:
            fields["caption"] = caption
        files = [{**doc, "data_b64": base64.b64encode(data).decode(), "kind": "documents"}]
        return (await self.send_update(fields, files))["message_id"]

    async def press(self, label: str) -> str:
        """Press the inline button labelled exactly ``label`` on the newest bot message that has it.

        Returns the callback_query_id. Raises AssertionError listing the
        available labels if no such button exists.
        """
        msgs = await self.messages()
        for m in reversed(msgs):
            btn = m.button(label)
            if btn is None:
                continue
            if "callback_data" not in btn:
                raise AssertionError(
                    f"button {label!r} in message {m.message_id} has no callback_data (it is {btn})"
                )
            return await self.press_data(btn["callback_data"], m.message_id)
        available = [f"#{m.message_id}: {m.buttons}" for m in msgs if m.buttons]
        last = msgs[-1].content[:200] if msgs else None
        raise AssertionError(
            f"no inline button {label!r} in chat {self.chat_id}. "
            f"Available buttons: {available or 'none'}. Last bot message: {last!r}"
        )

    async def press_data(self, callback_data: str, message_id: int | None = None) -> str:
        """Send a raw callback query (e.g. forged data or a stale/unknown message_id).

        If ``message_id`` is not a live bot message the update carries an
        InaccessibleMessage (date=0), as Telegram does. Returns callback_query_id.
        """
        res = await self.emulator.control(
            "/_control/userCallback",
            {
                "token": self.emulator.token,
                "from": self.user,
                "chat_id": self.chat_id,
                "message_id": message_id,
                "data": callback_data,
            },
        )
        self._cursor = res["seq"]
        return res["callback_query_id"]

    # ------------------------------------------------------------ bot side (what the user sees)
    async def _log(self, include_deleted: bool = False, last: int | None = None) -> tuple[list[BotMessage], int]:
        query: dict[str, Any] = {"token": self.emulator.token, "chatId": self.chat_id, "includeDeleted": include_deleted}
        if last is not None:
            query["last"] = last
        body = await self.emulator._request("POST", "/_control/chatLog", query)
        return [BotMessage.from_raw(m) for m in body["result"]], body["seq"]

    async def messages(self, *, include_deleted: bool = False, last: int | None = None) -> list[BotMessage]:
        """Everything the bot sent to this chat (or only the `last` newest), in order, in its current state."""
        return (await self._log(include_deleted, last))[0]

    async def last_message(self) -> BotMessage | None:
        msgs = await self.messages()
        return msgs[-1] if msgs else None

    async def last_text(self) -> str | None:
        """Plain text (or caption) of the newest bot message, None if there is none."""
        m = await self.last_message()
        return m.content if m else None

    async def buttons(self) -> list[str]:
        """Inline-keyboard labels of the newest bot message (flattened)."""
        m = await self.last_message()
        return m.buttons if m else []

    async def reply_keyboard(self) -> list[str]:
        """Labels of the reply keyboard currently shown (latest ReplyKeyboardMarkup, unless removed later)."""
        for m in reversed(await self.messages()):
            rm = m.reply_markup or {}
            if rm.get("remove_keyboard"):
                return []
            if "keyboard" in rm:
                return m.reply_keyboard
        return []

    async def documents(self) -> list[BotFile]:
        return [m.document_file for m in await self.messages() if m.document]  # type: ignore[misc]

    async def photos(self) -> list[BotFile]:
        return [m.photo_file for m in await self.messages() if m.photo]  # type: ignore[misc]

    async def callback_answers(self) -> list[dict[str, Any]]:
        """Callback queries of this chat with the bot's answerCallbackQuery
        (``answered``, ``text``, ``show_alert``, ``url``, ``cache_time``)."""
        return await self.emulator.control(
            "/_control/callbackAnswers", {"token": self.emulator.token, "chatId": self.chat_id}
        )

    async def wait_callback_answer(self, callback_query_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Wait until the bot answered the given callback query; return the answer."""
        deadline = time.monotonic() + timeout
        while True:
            for a in await self.callback_answers():
                if a["callback_query_id"] == callback_query_id and a["answered"]:
                    return a
            if time.monotonic() >= deadline:
                raise AssertionError(f"callback {callback_query_id} was not answered within {timeout}s")
            await asyncio.sleep(POLL_INTERVAL)

    # ------------------------------------------------------------ waiting
    async def wait_for(
        self,
        condition: Predicate | int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[BotMessage]:
        """Wait until ``condition(messages)`` is truthy, or (int) until there are at least that many messages."""
        if isinstance(condition, int):
            n = condition

            def condition(msgs: list[BotMessage]) -> bool:  # type: ignore[misc]
                return len(msgs) >= n

            desc = f"at least {n} bot messages"
        else:
            desc = getattr(condition, "__name__", "predicate")
        deadline = time.monotonic() + timeout
        while True:
            msgs = await self.messages()
            if condition(msgs):
                return msgs
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timeout ({timeout}s) waiting for {desc} in chat {self.chat_id}; "
                    f"bot messages so far: {[m.content[:80] for m in msgs]}\n"
                    f"emulator output:\n{self.emulator.output()[-2000:]}"
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_reply(self, after: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> BotMessage:
        """Wait for the bot's reaction to our last action and return the newest changed message.

        ``after=None``: any message sent or edited since our last send/press.
        ``after=n``: until the bot has more than ``n`` messages in this chat,
        or edited one since our last action.
        """
        cursor = self._cursor
        deadline = time.monotonic() + timeout
        while True:
            msgs, _seq = await self._log()
            changed = [m for m in msgs if m.seq > cursor]
            if after is None:
                hit = bool(changed)
            else:
                hit = len(msgs) > after or any(m.edited for m in changed)
            if hit:
                pool = changed or msgs
                return max(pool, key=lambda m: m.seq)
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timeout ({timeout}s) waiting for a bot reply in chat {self.chat_id} "
                    f"(after={after}); bot messages so far: {[m.content[:80] for m in msgs]}\n"
                    f"emulator output:\n{self.emulator.output()[-2000:]}"
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_idle(self, quiet: float = 0.15, timeout: float = DEFAULT_TIMEOUT) -> list[BotMessage]:
        """Wait until the bot has not sent/edited anything in this chat for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last_sig: tuple[int, ...] | None = None
        stable_since = time.monotonic()
        while True:
            msgs = await self.messages(include_deleted=True)
            sig = tuple(m.seq for m in msgs)
            now = time.monotonic()
            if sig != last_sig:
                last_sig, stable_since = sig, now
            elif now - stable_since >= quiet:
                return [m for m in msgs if not m.deleted]
            if now >= deadline:
                raise AssertionError(f"chat {self.chat_id} did not go idle within {timeout}s")
            await asyncio.sleep(POLL_INTERVAL)


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


# --------------------------------------------------------------------------- fixture helper
@contextlib.asynccontextmanager
async def running_emulator(token: str = DEFAULT_TOKEN, **kwargs: Any) -> AsyncIterator[TelegramEmulator]:
    """``async with running_emulator() as emu: ...`` — for an async pytest fixture::

        @pytest.fixture
        async def tg_emulator():
            async with running_emulator() as emu:
                yield emu
    """
    emu = TelegramEmulator(token, **kwargs)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()

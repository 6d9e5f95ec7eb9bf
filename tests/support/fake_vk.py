"""A fake VK API server (aiohttp) for end-to-end tests of the VK adapter.

It speaks the wire format that vk-api 11.x uses:

* ``/method/<name>`` — GET query and/or POST form (vk-api POSTs
  ``application/x-www-form-urlencoded``); answers ``{"response": ...}`` or
  ``{"error": {"error_code", "error_msg", "request_params"}}`` with HTTP 200,
  as VK does.  Only ``FakeVk.token`` is accepted (else error 5).
* Bots Long Poll: ``groups.getLongPollServer`` returns this server's own
  long-poll URL; ``GET <server>?act=a_check&key=&ts=&wait=`` waits for events.
* Upload servers for documents and message photos (multipart).

The bot side must reach it through ``handlers.vk.api_session.make_vk_session``
(vk-api hardcodes ``https://api.vk.ru``).  vk-api is synchronous: call it from
a thread (``asyncio.to_thread``), never directly from the event loop that runs
the fake, or both deadlock.

Everything here is synthetic: user names are generated, no network access.

Usage::

    fake = FakeVk()
    await fake.start()
    vk = vk_api.VkApi(token=fake.token, session=make_vk_session(fake.base_url))
    vk.RPS_DELAY = 0
    ...  # start the bot (in a thread)
    await fake.wait_long_poll_started()
    await fake.user_writes(111, "привет")
    await fake.wait_sent(1)
    assert fake.last_message_to(111)["text"] == "..."
    await fake.stop()
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web

__all__ = ["FakeVk", "VkFault", "ERROR_MESSAGES", "validate_keyboard"]

log = logging.getLogger(__name__)

CHAT_PEER_START = 2_000_000_000

ERROR_MESSAGES: dict[int, str] = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    8: "Invalid request: v is required",
    9: "Flood control",
    10: "Internal server error",
    14: "Captcha needed",
    15: "Access denied",
    100: "One of the parameters specified was missing or invalid",
    113: "Invalid user id",
    121: "Invalid hash",
    214: "Access to adding post denied",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    911: "Keyboard format is invalid",
    914: "Message is too long",
    917: "You don't have access to this chat",
}

# Keyboard limits (VK docs, "Bots: keyboards").
KEYBOARD_LIMITS = {
    False: {"rows": 10, "per_row": 5, "total": 40},  # standard keyboard
    True: {"rows": 6, "per_row": 5, "total": 10},  # inline keyboard
}
MAX_LABEL = 40
MAX_PAYLOAD = 255
BUTTON_COLORS = {"primary", "secondary", "negative", "positive"}
BUTTON_TYPES = {"text", "callback", "open_link", "location", "vkpay", "open_app"}
SNACKBAR_MAX = 90
MAX_ATTACHMENTS = 10
_ATTACHMENT_RE = re.compile(
    r"^(photo|video|audio|doc|wall|market|poll|story|audio_playlist|article)"
    r"-?\d+_\d+(_[A-Za-z0-9]+)?$"
)

DEFAULT_CLIENT_INFO: dict[str, Any] = {
    "button_actions": [
        "text", "vkpay", "open_app", "location", "open_link", "callback",
        "intent_subscribe", "intent_unsubscribe",
    ],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": True,
    "lang_id": 0,
}


class VkFault(Exception):
    """A VK API error to return as ``{"error": {...}}``."""

    def __init__(self, code: int, detail: str | None = None, **extra: Any) -> None:
        msg = ERROR_MESSAGES.get(code, "Unknown error occurred")
        if detail:
            msg = f"{msg}: {detail}"
        super().__init__(f"[{code}] {msg}")
        self.code = code
        self.msg = msg
        self.extra = extra


def validate_keyboard(raw: str) -> dict[str, Any]:
    """Parse a ``keyboard`` parameter and enforce VK's limits (error 911)."""
    try:
        kb = json.loads(raw)
    except ValueError as exc:
        raise VkFault(911, f"invalid JSON ({exc})") from None
    if not isinstance(kb, dict):
        raise VkFault(911, "keyboard must be an object")
    rows = kb.get("buttons")
    if not isinstance(rows, list):
        raise VkFault(911, "buttons must be an array")
    inline = kb.get("inline", False)
    if not isinstance(inline, bool):
        raise VkFault(911, "inline must be a boolean")
    if inline and kb.get("one_time"):
        raise VkFault(911, "one_time is not supported for inline keyboards")
    lim = KEYBOARD_LIMITS[inline]
    kind = "inline" if inline else "standard"
    if len(rows) > lim["rows"]:
        raise VkFault(911, f"too many rows: {len(rows)} > {lim['rows']} ({kind})")
    total = 0
    for r, row in enumerate(rows):
        if not isinstance(row, list):
            raise VkFault(911, f"buttons[{r}] must be an array")
        if len(row) > lim["per_row"]:
            raise VkFault(911, f"buttons[{r}]: too many buttons in row: {len(row)} > {lim['per_row']}")
        total += len(row)
        for c, button in enumerate(row):
            _validate_button(button, f"buttons[{r}][{c}]")
    if total > lim["total"]:
        raise VkFault(911, f"too many buttons: {total} > {lim['total']} ({kind})")
    return kb


def _validate_button(button: Any, where: str) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("action"), dict):
        raise VkFault(911, f"{where}.action must be an object")
    action = button["action"]
    btype = action.get("type")
    if btype not in BUTTON_TYPES:
        raise VkFault(911, f"{where}.action.type: unsupported type {btype!r}")
    if btype in ("text", "callback", "open_link"):
        label = action.get("label")
        if not isinstance(label, str) or not label:
            raise VkFault(911, f"{where}.action.label is required")
        if len(label) > MAX_LABEL:
            raise VkFault(911, f"{where}.action.label is too long ({len(label)} > {MAX_LABEL})")
    if btype == "open_link":
        link = action.get("link")
        if not isinstance(link, str) or not re.match(r"^https?://", link):
            raise VkFault(911, f"{where}.action.link must be an http(s) URL")
    if "color" in button and btype in ("text", "callback"):
        if button["color"] not in BUTTON_COLORS:
            raise VkFault(911, f"{where}.color: invalid color {button['color']!r}")
    if "payload" in action and action["payload"] is not None:
        payload = action["payload"]
        if isinstance(payload, str):
            try:
                json.loads(payload)
            except ValueError:
                raise VkFault(911, f"{where}.action.payload is not valid JSON") from None
        else:
            payload = json.dumps(payload, ensure_ascii=False)
        if len(payload) > MAX_PAYLOAD:
            raise VkFault(911, f"{where}.action.payload is too long ({len(payload)} > {MAX_PAYLOAD})")


@dataclass
class _Fault:
    method: str
    code: int
    times: int
    peer_id: int | None
    detail: str | None


def _split_ints(value: str, name: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise VkFault(100, f"{name} is invalid") from None


def _int_param(params: dict[str, str], name: str, *, required: bool = False,
               default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise VkFault(100, f"{name} is a required parameter")
        return default
    try:
        return int(raw)
    except ValueError:
        raise VkFault(100, f"{name} not integer") from None


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "0").lower() in ("1", "true")


def _api_version(params: dict[str, str]) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in params.get("v", "0").split("."))
    except ValueError:
        return (0,)


class FakeVk:
    """In-process fake of the VK API for one community (group token)."""

    MAX_MESSAGE_LENGTH = 9000
    LONG_POLL_MAX_WAIT = 90.0
    API_VERSION = "5.199"

    def __init__(
        self,
        *,
        group_id: int = 200_000_001,
        token: str = "fake-vk-group-token",
        group_name: str = "Тестовое сообщество",
        max_rps: int | None = None,
    ) -> None:
        self.group_id = group_id
        self.token = token
        self.group_name = group_name
        #: if set, more than ``max_rps`` method calls within 1 s → error 6.
        self.max_rps = max_rps

        # --- state visible to tests ---------------------------------------
        self.sent: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []
        self.deleted: list[dict[str, Any]] = []
        self.event_answers: list[dict[str, Any]] = []
        self.wall_posts: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []  # long-poll history
        self.long_poll_requests = 0
        self.internal_errors: list[str] = []
        #: user_id -> {"first_name", "last_name", ...} overrides for users.get
        self.users: dict[int, dict[str, Any]] = {}
        #: community members for groups.getMembers
        self.members: list[int] = []

        # --- internals ----------------------------------------------------
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._closing = False
        self.base_url = ""
        self._key = secrets.token_hex(20)
        self._ts_base = 1
        self._lp_faults: list[int] = []
        self._lp_seq = 0
        self._lp_ok_seq = 0
        self._lp_fault_seq = 0
        self._faults: list[_Fault] = []
        self._forbidden: set[int] = set()
        self._privacy_blocked: set[int] = set()
        self._next_message_id = 1
        self._cmids: dict[int, int] = {}
        self._by_random_id: dict[tuple[int, int], dict[str, Any]] = {}
        self._callback_events: dict[str, dict[str, Any]] = {}
        self._docs: dict[str, dict[str, Any]] = {}  # opaque file -> upload
        self._photos: dict[str, dict[str, Any]] = {}
        self._files: dict[str, bytes] = {}  # served at /files/<id>
        self._next_doc_id = 1
        self._next_photo_id = 1
        self._next_post_id = 1
        self._recent_calls: deque[float] = deque()
        self._methods: dict[str, Callable[[dict[str, str]], Any]] = {
            "groups.getLongPollServer": self._m_get_long_poll_server,
            "messages.send": self._m_messages_send,
            "messages.edit": self._m_messages_edit,
            "messages.delete": self._m_messages_delete,
            "messages.sendMessageEventAnswer": self._m_send_event_answer,
            "messages.isMessagesFromGroupAllowed": self._m_is_allowed,
            "wall.post": self._m_wall_post,
            "users.get": self._m_users_get,
            "groups.getById": self._m_groups_get_by_id,
            "groups.getMembers": self._m_groups_get_members,
            "docs.getMessagesUploadServer": self._m_docs_upload_server,
            "docs.getUploadServer": self._m_docs_upload_server,
            "docs.getWallUploadServer": self._m_docs_upload_server,
            "docs.save": self._m_docs_save,
            "photos.getMessagesUploadServer": self._m_photos_upload_server,
            "photos.saveMessagesPhoto": self._m_photos_save,
        }

    # ------------------------------------------------------------------ life
    async def start(self) -> "FakeVk":
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/method/{name}", self._handle_method)
        app.router.add_get("/lp/{path}", self._handle_long_poll)
        app.router.add_post("/upload/doc", self._handle_doc_upload)
        app.router.add_post("/upload/photo", self._handle_photo_upload)
        app.router.add_get("/files/{file_id}", self._handle_file_download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Release pending long polls and shut the server down."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeVk":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def long_poll_url(self) -> str:
        return f"{self.base_url}/lp/wh{self.group_id}"

    # ------------------------------------------------------- change notices
    def _notify(self) -> None:
        loop = self._loop
        if loop is None or self._changed is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._notify)
            return
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        assert self._changed is not None, "FakeVk.start() was not awaited"
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0,
                         what: str = "condition") -> None:
        """Wait until ``predicate()`` is true (re-checked on every state change)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"FakeVk: timed out after {timeout}s waiting for {what}; "
                    f"calls={[c['method'] for c in self.calls][-10:]}, "
                    f"sent={len(self.sent)}, long_poll_requests={self.long_poll_requests}, "
                    f"internal_errors={self.internal_errors}"
                )
            await self._wait_change(min(remaining, 0.5))

    async def wait_long_poll_started(self, timeout: float = 5.0) -> None:
        """Wait until the bot is polling with a valid key and no injected fault is pending.

        Also use it after ``long_poll_failed(...)`` to wait for the bot to recover.
        Events pushed before the bot's first getLongPollServer are never delivered
        (its ts is "now"), so call this before ``user_writes``/``user_presses``.
        """
        await self.wait_until(
            lambda: not self._lp_faults and self._lp_ok_seq > self._lp_fault_seq,
            timeout, "the bot's long poll",
        )

    async def wait_sent(self, count: int = 1, timeout: float = 5.0,
                        peer_id: int | None = None) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages were sent (to ``peer_id`` if given)."""
        def pick() -> list[dict[str, Any]]:
            return self.sent if peer_id is None else self.messages_to(peer_id)
        await self.wait_until(lambda: len(pick()) >= count, timeout,
                              f"{count} sent message(s)" + (f" to {peer_id}" if peer_id else ""))
        return list(pick())

    async def wait_calls(self, method: str, count: int = 1,
                         timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``method`` was called at least ``count`` times."""
        await self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout,
                              f"{count} call(s) of {method}")
        return self.calls_to(method)

    async def wait_event_answers(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_until(lambda: len(self.event_answers) >= count, timeout,
                              f"{count} sendMessageEventAnswer call(s)")
        return list(self.event_answers)

    # -------------------------------------------------------- test queries
    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["method"] == method]

    def messages_to(self, user_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["peer_id"] == user_id]

    def last_message_to(self, user_id: int) -> dict[str, Any]:
        msgs = self.messages_to(user_id)
        if not msgs:
            peers = sorted({m["peer_id"] for m in self.sent})
            raise AssertionError(f"no messages were sent to {user_id}; sent to peers {peers}")
        return msgs[-1]

    @staticmethod
    def buttons_of(message: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Flatten a keyboard (or a ``sent`` record) into a list of buttons.

        Each item: ``label``, ``type``, ``payload`` (parsed JSON or None),
        ``payload_raw`` (string as sent), ``link``, ``color``, ``row``, ``col``.
        """
        if message is None:
            return []
        kb = message.get("keyboard", message) if "buttons" not in message else message
        if not kb:
            return []
        result = []
        for r, row in enumerate(kb.get("buttons", [])):
            for c, button in enumerate(row):
                action = button.get("action", {})
                raw = action.get("payload")
                if raw is not None and not isinstance(raw, str):
                    raw = json.dumps(raw, ensure_ascii=False)
                result.append({
                    "label": action.get("label"),
                    "type": action.get("type"),
                    "payload": json.loads(raw) if raw else None,
                    "payload_raw": raw,
                    "link": action.get("link"),
                    "color": button.get("color"),
                    "row": r,
                    "col": c,
                })
        return result

    # ---------------------------------------------------- test-side actions
    def _next_cmid(self, peer_id: int) -> int:
        self._cmids[peer_id] = self._cmids.get(peer_id, 0) + 1
        return self._cmids[peer_id]

    def _alloc_message_id(self) -> int:
        mid = self._next_message_id
        self._next_message_id += 1
        return mid

    def _wrap_event(self, etype: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": etype,
            "object": obj,
            "group_id": self.group_id,
            "event_id": secrets.token_hex(20),
            "v": self.API_VERSION,
        }

    async def user_writes(
        self,
        user_id: int,
        text: str,
        payload: str | dict[str, Any] | None = None,
        *,
        peer_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
        client_info: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Enqueue ``message_new`` (a typed message or a text-button press with ``payload``).

        Returns the event (``event["object"]["message"]`` holds id and
        conversation_message_id).
        """
        peer = user_id if peer_id is None else peer_id
        message: dict[str, Any] = {
            "date": int(time.time()),
            "from_id": user_id,
            "id": self._alloc_message_id(),
            "out": 0,
            "version": 1,
            "attachments": attachments or [],
            "conversation_message_id": self._next_cmid(peer),
            "fwd_messages": [],
            "important": False,
            "is_hidden": False,
            "peer_id": peer,
            "random_id": 0,
            "text": text,
        }
        if payload is not None:
            message["payload"] = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        obj = {"message": message, "client_info": copy.deepcopy(client_info or DEFAULT_CLIENT_INFO)}
        event = self._wrap_event("message_new", obj)
        self.push_raw_event(event)
        return event

    async def user_presses(
        self,
        user_id: int,
        payload: str | dict[str, Any] | None,
        conversation_message_id: int | None = None,
        *,
        peer_id: int | None = None,
    ) -> dict[str, Any]:
        """Enqueue ``message_event`` (a callback-button press).

        ``conversation_message_id`` defaults to the latest message to the peer
        whose keyboard has a callback button with this payload (else the latest
        message to the peer).  Returns the event; its
        ``["object"]["event_id"]`` is what sendMessageEventAnswer must echo.
        """
        peer = user_id if peer_id is None else peer_id
        data = json.loads(payload) if isinstance(payload, str) else payload
        if conversation_message_id is None:
            conversation_message_id = self._find_cmid_for_payload(peer, data)
        obj = {
            "user_id": user_id,
            "peer_id": peer,
            "event_id": secrets.token_hex(6),
            "payload": data,
            "conversation_message_id": conversation_message_id,
        }
        event = self._wrap_event("message_event", obj)
        self.push_raw_event(event)
        return event

    async def user_taps(self, user_id: int, label: str,
                        message: dict[str, Any] | None = None) -> dict[str, Any]:
        """Press the button labelled ``label`` on ``message`` (default: last message to user).

        Text buttons become ``message_new`` with the payload, callback buttons
        ``message_event``.  Raises AssertionError if there is no such button.
        """
        message = message or self.last_message_to(user_id)
        for button in self.buttons_of(message):
            if button["label"] == label:
                if button["type"] == "callback":
                    return await self.user_presses(
                        user_id, button["payload"], message.get("conversation_message_id"),
                        peer_id=message["peer_id"])
                if button["type"] == "text":
                    return await self.user_writes(user_id, label, button["payload_raw"],
                                                  peer_id=message["peer_id"])
                raise AssertionError(f"button {label!r} is of type {button['type']}, cannot be tapped")
        labels = [b["label"] for b in self.buttons_of(message)]
        raise AssertionError(f"no button {label!r} in message; buttons: {labels}")

    async def user_allows(self, user_id: int) -> None:
        """User allows messages from the community (``message_allow`` event)."""
        self._forbidden.discard(user_id)
        self.push_raw_event(self._wrap_event("message_allow", {"user_id": user_id, "key": ""}))

    async def user_denies(self, user_id: int) -> None:
        """User forbids messages from the community (``message_deny`` event)."""
        self._forbidden.add(user_id)
        self.push_raw_event(self._wrap_event("message_deny", {"user_id": user_id}))

    def _find_cmid_for_payload(self, peer: int, data: Any) -> int:
        msgs = self.messages_to(peer)
        for m in reversed(msgs):
            for b in self.buttons_of(m):
                if b["type"] == "callback" and b["payload"] == data:
                    return m["conversation_message_id"]
        return msgs[-1]["conversation_message_id"] if msgs else 0

    def push_raw_event(self, event: dict[str, Any]) -> None:
        """Append an event verbatim to the long-poll stream (e.g. a duplicate)."""
        event = copy.deepcopy(event)
        if event.get("type") == "message_event":
            obj = event.get("object", {})
            if "event_id" in obj:
                self._callback_events[obj["event_id"]] = obj
        self.events.append(event)
        self._notify()

    # ------------------------------------------------------ fault injection
    def fail_next(self, method: str, error_code: int, times: int = 1,
                  peer_id: int | None = None, detail: str | None = None) -> None:
        """Make the next ``times`` calls of ``method`` (to ``peer_id``) fail with ``error_code``.

        Note: vk-api retries error 6 by itself after sleeping 0.5 s.
        """
        self._faults.append(_Fault(method, error_code, times, peer_id, detail))

    def long_poll_failed(self, code: int, times: int = 1) -> None:
        """Answer the next ``times`` long-poll requests with ``{"failed": code}``.

        A request that is already waiting is answered at once.  Codes 2 and 3
        also rotate the key (the old one then yields failed 2).
        """
        if code not in (1, 2, 3):
            raise ValueError("long poll failed code must be 1, 2 or 3")
        self._lp_faults.extend([code] * times)
        self._notify()

    def forbid_messages(self, user_id: int) -> None:
        """messages.send to this user → 901; isMessagesFromGroupAllowed → 0."""
        self._forbidden.add(user_id)

    def allow_messages(self, user_id: int) -> None:
        self._forbidden.discard(user_id)
        self._privacy_blocked.discard(user_id)

    def block_by_privacy(self, user_id: int) -> None:
        """messages.send to this user → 902."""
        self._privacy_blocked.add(user_id)

    # ------------------------------------------------------- HTTP handlers
    @staticmethod
    def _json(data: Any) -> web.Response:
        return web.Response(text=json.dumps(data, ensure_ascii=False),
                            content_type="application/json")

    async def _handle_method(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        params: dict[str, str] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            for k, v in form.items():
                if isinstance(v, str):
                    params[k] = v
        token = params.pop("access_token", None)
        self.calls.append({
            "method": name,
            "params": dict(params),
            "time": time.monotonic(),
            "http_method": request.method,
        })
        self._notify()
        try:
            if not token:
                raise VkFault(5, "no access_token passed.")
            if token != self.token:
                raise VkFault(5)
            if not params.get("v"):
                raise VkFault(8)
            self._check_rps()
            self._check_injected(name, params)
            handler = self._methods.get(name)
            if handler is None:
                raise VkFault(3)
            result = handler(params)
            self._notify()
            return self._json({"response": result})
        except VkFault as fault:
            return self._json(self._error_body(name, params, fault))
        except Exception as exc:  # a bug in the fake: surface it, don't 500
            log.exception("FakeVk internal error in %s", name)
            self.internal_errors.append(f"{name}: {exc!r}")
            return self._json(self._error_body(name, params, VkFault(10, repr(exc))))

    @staticmethod
    def _error_body(name: str, params: dict[str, str], fault: VkFault) -> dict[str, Any]:
        request_params = [{"key": "method", "value": name}, {"key": "oauth", "value": "1"}]
        request_params += [{"key": k, "value": v} for k, v in params.items()]
        error = {"error_code": fault.code, "error_msg": fault.msg, "request_params": request_params}
        error.update(fault.extra)
        return {"error": error}

    def _check_rps(self) -> None:
        if self.max_rps is None:
            return
        now = time.monotonic()
        while self._recent_calls and now - self._recent_calls[0] > 1.0:
            self._recent_calls.popleft()
        if len(self._recent_calls) >= self.max_rps:
            raise VkFault(6)
        self._recent_calls.append(now)

    def _check_injected(self, name: str, params: dict[str, str]) -> None:
        for fault in self._faults:
            if fault.method != name or fault.times <= 0:
                continue
            if fault.peer_id is not None and fault.peer_id not in self._peers_of(params):
                continue
            fault.times -= 1
            self._faults = [f for f in self._faults if f.times > 0]
            extra: dict[str, Any] = {}
            if fault.code == 14:  # vk-api reads these for captcha errors
                extra = {"captcha_sid": "1", "captcha_img": f"{self.base_url}/captcha.jpg"}
            raise VkFault(fault.code, fault.detail, **extra)

    @staticmethod
    def _peers_of(params: dict[str, str]) -> set[int]:
        peers: set[int] = set()
        for key in ("peer_id", "user_id"):
            if params.get(key, "").lstrip("-").isdigit():
                peers.add(int(params[key]))
        if params.get("peer_ids"):
            peers.update(int(x) for x in params["peer_ids"].split(",") if x.strip().lstrip("-").isdigit())
        return peers

    # ------------------------------------------------------------ long poll
    @property
    def _current_ts(self) -> int:
        return self._ts_base + len(self.events)

    async def _handle_long_poll(self, request: web.Request) -> web.Response:
        self.long_poll_requests += 1
        self._lp_seq += 1
        seq = self._lp_seq
        self._notify()
        q = request.query
        if q.get("act") != "a_check" or q.get("key") != self._key:
            self._lp_fault_seq = seq
            return self._json({"failed": 2})
        try:
            ts = int(q.get("ts", ""))
        except ValueError:
            self._lp_fault_seq = seq
            return self._json({"failed": 1, "ts": str(self._current_ts)})
        if ts < self._ts_base:
            self._lp_fault_seq = seq
            return self._json({"failed": 1, "ts": str(self._current_ts)})
        try:
            wait = min(float(q.get("wait", "25")), self.LONG_POLL_MAX_WAIT)
        except ValueError:
            wait = 25.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        ok_marked = False
        while True:
            if self._lp_faults:
                code = self._lp_faults.pop(0)
                self._lp_fault_seq = seq
                self._notify()
                if code == 1:
                    return self._json({"failed": 1, "ts": str(self._current_ts)})
                self._key = secrets.token_hex(20)
                return self._json({"failed": code})
            if not ok_marked:
                self._lp_ok_seq = seq
                ok_marked = True
                self._notify()
            remaining = deadline - loop.time()
            if ts < self._current_ts or self._closing or remaining <= 0:
                updates = self.events[ts - self._ts_base:]
                return self._json({"ts": str(self._current_ts), "updates": updates})
            await self._wait_change(remaining)

    # -------------------------------------------------------------- uploads
    async def _read_files(self, request: web.Request,
                          accept: Callable[[str], bool]) -> list[dict[str, Any]]:
        files = []
        if not request.content_type.startswith("multipart/"):
            return files
        reader = await request.multipart()
        async for part in reader:
            if part.name is None or not accept(part.name):
                await part.release()
                continue
            data = await part.read(decode=False)
            files.append({
                "field": part.name,
                "filename": part.filename,
                "bytes": bytes(data),
                "content_type": part.headers.get("Content-Type"),
            })
        return files

    async def _handle_doc_upload(self, request: web.Request) -> web.Response:
        files = await self._read_files(request, lambda n: n == "file")
        if not files:
            return self._json({"error": "no file"})
        item = files[0]
        item.update(kind="doc", file=f"doc|{secrets.token_hex(16)}",
                    query=dict(request.query))
        self.uploads.append(item)
        self._docs[item["file"]] = item
        self._notify()
        return self._json({"file": item["file"]})

    async def _handle_photo_upload(self, request: web.Request) -> web.Response:
        files = await self._read_files(request, lambda n: n == "photo" or re.fullmatch(r"file\d*", n) is not None)
        if not files:
            return self._json({"server": 1, "photo": "[]", "hash": ""})
        tokens = []
        for item in files:
            item.update(kind="photo", file=f"photo|{secrets.token_hex(16)}",
                        query=dict(request.query))
            self.uploads.append(item)
            self._photos[item["file"]] = item
            tokens.append({"photo": item["file"]})
        photo = json.dumps(tokens)
        self._notify()
        return self._json({"server": 100500, "photo": photo, "hash": self._photo_hash(photo)})

    @staticmethod
    def _photo_hash(photo: str) -> str:
        return hashlib.md5(photo.encode()).hexdigest()

    async def _handle_file_download(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["file_id"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data)

    # -------------------------------------------------------------- methods
    def _m_get_long_poll_server(self, p: dict[str, str]) -> dict[str, Any]:
        gid = _int_param(p, "group_id", required=True)
        if gid != self.group_id:
            raise VkFault(15, "no access to this group")
        return {"key": self._key, "server": self.long_poll_url, "ts": str(self._current_ts)}

    def _check_can_write(self, peer: int) -> None:
        if 0 < peer < CHAT_PEER_START:
            if peer in self._forbidden:
                raise VkFault(901)
            if peer in self._privacy_blocked:
                raise VkFault(902)

    def _m_messages_send(self, p: dict[str, str]) -> Any:
        random_id = _int_param(p, "random_id")
        if random_id is None:
            raise VkFault(100, "random_id is a required parameter")
        multi = bool(p.get("peer_ids"))
        if multi:
            peers = _split_ints(p["peer_ids"], "peer_ids")
        elif p.get("peer_id"):
            peers = [_int_param(p, "peer_id")]  # type: ignore[list-item]
        elif p.get("user_id"):
            peers = [_int_param(p, "user_id")]  # type: ignore[list-item]
        elif p.get("chat_id"):
            peers = [CHAT_PEER_START + _int_param(p, "chat_id")]  # type: ignore[operator]
        else:
            raise VkFault(100, "peer_id is undefined")
        text = p.get("message", "")
        attachments = self._parse_attachments(p.get("attachment", ""))
        if not text and not attachments and not p.get("sticker_id") and not p.get("forward_messages"):
            raise VkFault(100, "message is empty or invalid")
        if len(text) > self.MAX_MESSAGE_LENGTH:
            raise VkFault(914)
        keyboard = validate_keyboard(p["keyboard"]) if p.get("keyboard") else None

        results: list[dict[str, Any]] = []
        for peer in peers:
            try:
                self._check_can_write(peer)
            except VkFault as fault:
                if not multi:
                    raise
                results.append({"peer_id": peer, "error": {"code": fault.code, "description": fault.msg}})
                continue
            record = self._by_random_id.get((peer, random_id)) if random_id else None
            if record is None:
                record = {
                    "peer_id": peer,
                    "text": text,
                    "keyboard": keyboard,
                    "attachment": p.get("attachment") or None,
                    "attachments": attachments,
                    "random_id": random_id,
                    "message_id": self._alloc_message_id(),
                    "conversation_message_id": self._next_cmid(peer),
                    "dont_parse_links": _flag(p, "dont_parse_links"),
                    "disable_mentions": _flag(p, "disable_mentions"),
                    "params": dict(p),
                    "time": time.monotonic(),
                }
                self.sent.append(record)
                if random_id:
                    self._by_random_id[(peer, random_id)] = record
            results.append({"peer_id": peer, "message_id": record["message_id"],
                            "conversation_message_id": record["conversation_message_id"]})
        if multi:
            return results
        return results[0]["message_id"]

    @staticmethod
    def _parse_attachments(raw: str) -> list[str]:
        items = [a.strip() for a in raw.split(",") if a.strip()]
        if len(items) > MAX_ATTACHMENTS:
            raise VkFault(100, f"too many attachments ({len(items)} > {MAX_ATTACHMENTS})")
        for a in items:
            if not _ATTACHMENT_RE.match(a):
                raise VkFault(100, f"attachment {a!r} is invalid")
        return items

    def _find_sent(self, p: dict[str, str]) -> dict[str, Any]:
        peer = _int_param(p, "peer_id", required=True)
        mid = _int_param(p, "message_id")
        cmid = _int_param(p, "conversation_message_id")
        if mid is None and cmid is None:
            raise VkFault(100, "message_id or conversation_message_id is required")
        for m in self.sent:
            if m["peer_id"] == peer and (m["message_id"] == mid or m["conversation_message_id"] == cmid):
                return m
        raise VkFault(100, "message not found")

    def _m_messages_edit(self, p: dict[str, str]) -> int:
        record = self._find_sent(p)
        if "message" in p:
            if len(p["message"]) > self.MAX_MESSAGE_LENGTH:
                raise VkFault(914)
            record["text"] = p["message"]
        if "keyboard" in p:
            record["keyboard"] = validate_keyboard(p["keyboard"]) if p["keyboard"] else None
        if "attachment" in p:
            record["attachments"] = self._parse_attachments(p["attachment"])
            record["attachment"] = p["attachment"] or None
        record["edited"] = True
        self.edits.append({
            "peer_id": record["peer_id"],
            "message_id": record["message_id"],
            "conversation_message_id": record["conversation_message_id"],
            "text": record["text"],
            "keyboard": record["keyboard"],
            "params": dict(p),
        })
        return 1

    def _m_messages_delete(self, p: dict[str, str]) -> dict[str, int]:
        result: dict[str, int] = {}
        ids = _split_ints(p.get("message_ids", ""), "message_ids")
        cmids = _split_ints(p.get("cmids", "") or p.get("conversation_message_ids", ""), "cmids")
        peer = _int_param(p, "peer_id")
        for m in self.sent:
            hit = m["message_id"] in ids or (peer == m["peer_id"] and m["conversation_message_id"] in cmids)
            if hit:
                m["deleted"] = True
                self.deleted.append({"peer_id": m["peer_id"], "message_id": m["message_id"],
                                     "delete_for_all": _flag(p, "delete_for_all")})
                result[str(m["message_id"])] = 1
        if not result:
            raise VkFault(100, "message_ids is undefined")
        return result

    def _m_send_event_answer(self, p: dict[str, str]) -> int:
        event_id = p.get("event_id")
        user_id = _int_param(p, "user_id", required=True)
        peer_id = _int_param(p, "peer_id", required=True)
        if not event_id:
            raise VkFault(100, "event_id is a required parameter")
        original = self._callback_events.get(event_id)
        if original is None:
            raise VkFault(100, "event_id is invalid")
        if original.get("user_id") != user_id or original.get("peer_id") != peer_id:
            raise VkFault(100, "user_id/peer_id do not match the event")
        event_data = None
        if p.get("event_data"):
            try:
                event_data = json.loads(p["event_data"])
            except ValueError:
                raise VkFault(100, "event_data is not valid JSON") from None
            etype = event_data.get("type") if isinstance(event_data, dict) else None
            if etype not in ("show_snackbar", "open_link", "open_app"):
                raise VkFault(100, f"event_data.type {etype!r} is invalid")
            if etype == "show_snackbar" and len(event_data.get("text", "")) > SNACKBAR_MAX:
                raise VkFault(100, f"event_data.text is too long (> {SNACKBAR_MAX})")
        self.event_answers.append({
            "event_id": event_id,
            "user_id": user_id,
            "peer_id": peer_id,
            "event_data": event_data,
            "time": time.monotonic(),
        })
        return 1

    def _m_is_allowed(self, p: dict[str, str]) -> dict[str, int]:
        user_id = _int_param(p, "user_id", required=True)
        _int_param(p, "group_id", required=True)
        return {"is_allowed": 0 if user_id in self._forbidden else 1}

    def _m_wall_post(self, p: dict[str, str]) -> dict[str, int]:
        owner_id = _int_param(p, "owner_id")
        if owner_id != -self.group_id:
            raise VkFault(214, "owner_id must be -group_id for a group token")
        attachments = [a.strip() for a in p.get("attachments", "").split(",") if a.strip()]
        if not p.get("message") and not attachments:
            raise VkFault(100, "message is empty")
        post_id = self._next_post_id
        self._next_post_id += 1
        self.wall_posts.append({
            "post_id": post_id,
            "owner_id": owner_id,
            "from_group": _flag(p, "from_group"),
            "text": p.get("message", ""),
            "attachments": attachments,
            "params": dict(p),
        })
        return {"post_id": post_id}

    def _m_users_get(self, p: dict[str, str]) -> list[dict[str, Any]]:
        raw = p.get("user_ids") or p.get("user_id") or ""
        result = []
        for item in (x.strip() for x in raw.split(",") if x.strip()):
            if not item.isdigit():
                raise VkFault(113)
            uid = int(item)
            user = {
                "id": uid,
                "first_name": f"Имя{uid}",
                "last_name": f"Фамилия{uid}",
                "can_access_closed": True,
                "is_closed": False,
            }
            user.update(self.users.get(uid, {}))
            result.append(user)
        return result

    def _group_obj(self, gid: int) -> dict[str, Any]:
        return {
            "id": gid,
            "name": self.group_name if gid == self.group_id else f"Сообщество {gid}",
            "screen_name": f"club{gid}",
            "is_closed": 0,
            "type": "group",
            "photo_50": f"{self.base_url}/files/group{gid}",
        }

    def _m_groups_get_by_id(self, p: dict[str, str]) -> Any:
        raw = p.get("group_ids") or p.get("group_id") or str(self.group_id)
        groups = [self._group_obj(g) for g in _split_ints(raw, "group_ids")]
        if _api_version(p) >= (5, 194):  # newer versions wrap the list
            return {"groups": groups, "profiles": []}
        return groups

    def _m_groups_get_members(self, p: dict[str, str]) -> dict[str, Any]:
        gid = _int_param(p, "group_id", required=True)
        if gid != self.group_id:
            raise VkFault(100, "group_id is invalid")
        offset = _int_param(p, "offset", default=0) or 0
        count = _int_param(p, "count", default=1000) or 1000
        return {"count": len(self.members), "items": self.members[offset:offset + count]}

    def _m_docs_upload_server(self, p: dict[str, str]) -> dict[str, str]:
        peer = p.get("peer_id", "")
        dtype = p.get("type", "doc")
        return {"upload_url": f"{self.base_url}/upload/doc?peer_id={peer}&type={dtype}"}

    def _m_docs_save(self, p: dict[str, str]) -> dict[str, Any]:
        upload = self._docs.get(p.get("file", ""))
        if upload is None:
            raise VkFault(100, "file is undefined or invalid")
        filename = upload["filename"] or "file"
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        doc_id = self._next_doc_id
        self._next_doc_id += 1
        doc = {
            "id": doc_id,
            "owner_id": -self.group_id,
            "title": p.get("title") or filename,
            "size": len(upload["bytes"]),
            "ext": ext,
            "date": int(time.time()),
            "type": 1 if ext in ("txt", "doc", "docx", "pdf", "xlsx", "xls", "odt") else 8,
            "url": f"{self.base_url}/files/doc{doc_id}",
        }
        self._files[f"doc{doc_id}"] = upload["bytes"]
        upload["saved_as"] = f"doc{doc['owner_id']}_{doc_id}"
        return {"type": "doc", "doc": doc}

    def _m_photos_upload_server(self, p: dict[str, str]) -> dict[str, Any]:
        return {"upload_url": f"{self.base_url}/upload/photo?peer_id={p.get('peer_id', '')}",
                "album_id": -3, "group_id": self.group_id}

    def _m_photos_save(self, p: dict[str, str]) -> list[dict[str, Any]]:
        photo = p.get("photo", "")
        if p.get("hash") != self._photo_hash(photo):
            raise VkFault(121)
        try:
            tokens = [t["photo"] for t in json.loads(photo)]
        except (ValueError, TypeError, KeyError):
            raise VkFault(100, "photo is invalid") from None
        if not tokens:
            raise VkFault(100, "photo is empty")
        result = []
        for token in tokens:
            upload = self._photos.get(token)
            if upload is None:
                raise VkFault(100, "photo is invalid")
            pid = self._next_photo_id
            self._next_photo_id += 1
            access_key = secrets.token_hex(9)
            upload["saved_as"] = f"photo{-self.group_id}_{pid}_{access_key}"
            self._files[f"photo{pid}"] = upload["bytes"]
            result.append({
                "id": pid,
                "owner_id": -self.group_id,
                "album_id": -3,
                "date": int(time.time()),
                "access_key": access_key,
                "text": "",
                "has_tags": False,
                "sizes": [{"type": "x", "width": 604, "height": 604,
                           "url": f"{self.base_url}/files/photo{pid}"}],
            })
        return result


"""An asyncio face of the synchronous vk-api: calls in worker threads, uploads, error classes.

vk-api is built on `requests`; calling it on the event loop would block every other update,
so each call goes through `asyncio.to_thread`. vk-api serialises calls of one `VkApi` with a
lock and spaces them by `RPS_DELAY`, which also makes the shared `requests.Session` safe.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import requests
import vk_api
from vk_api.exceptions import ApiError, ApiHttpError, Captcha, VkApiError

from dialogs.model import OutFile
from scheduler.broadcaster import Fatal, Rejected, RetryAfter, SendError, SlowDown, Transient, Unreachable

__all__ = ["FLOOD_WAIT", "UploadError", "VkClient", "classify_vk_error"]

# (connect, read) seconds for uploads: files go to VK's upload servers, not api.vk.ru.
UPLOAD_TIMEOUT: tuple[float, float] = (5.0, 120.0)
# VK error 9 ("Flood control") names no wait; the limit is per recipient and lasts long.
FLOOD_WAIT = 3600.0
_TRANSIENT_CODES = {1, 10}
_FATAL_CODES = {5, 27, 28}
_UNREACHABLE_CODES = {901, 902}


class UploadError(VkApiError):
    """An upload server refused the file (wrong type, too big): retrying will not help."""


def classify_vk_error(exc: BaseException) -> SendError:
    """Map a vk-api (or network) exception to the broadcaster's SendError family.

    6 → SlowDown, 9 → RetryAfter (long, this chat only), 901/902 (the person forbade
    messages) → Unreachable, 1/10 and network errors → Transient, 5/27/28 (bad token) →
    Fatal, everything else (100, 911 bad keyboard, 914 too long...) → Rejected.
    Raises ``exc`` itself back if it is not a sending failure at all (a programming error).
    """
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, ApiError):
        code = exc.code
        text = f"VK error {code}"
        if code == 6:
            return SlowDown(1.0, text)
        if code == 9:
            return RetryAfter(FLOOD_WAIT, text, scope="chat")
        if code in _UNREACHABLE_CODES:
            return Unreachable(text)
        if code in _TRANSIENT_CODES:
            return Transient(text)
        if code in _FATAL_CODES:
            return Fatal(text)
        return Rejected(text)
    if isinstance(exc, ApiHttpError):  # a proxy's or VK's 5xx page
        return Transient(f"VK HTTP {exc.response.status_code}")
    if isinstance(exc, Captcha):  # not expected with a community token; wait and retry
        return Transient("VK captcha")
    if isinstance(exc, (requests.RequestException, OSError, asyncio.TimeoutError)):
        return Transient(f"network: {type(exc).__name__}")
    if isinstance(exc, ValueError):  # a non-JSON body (JSONDecodeError is a ValueError)
        return Transient(f"bad response: {type(exc).__name__}")
    if isinstance(exc, VkApiError):
        return Rejected(type(exc).__name__)
    raise exc


class VkClient:
    """One community's VK API: method calls, uploads and sends, each off the event loop."""

    def __init__(self, vk: vk_api.VkApi, group_id: int | None = None) -> None:
        self.vk = vk
        self.group_id = group_id

    async def call(self, method: str, **params: Any) -> Any:
        """Call an API method in a worker thread; vk-api's exceptions propagate."""
        values = {key: value for key, value in params.items() if value is not None}
        return await asyncio.to_thread(self.vk.method, method, values)

    async def send_message(
        self,
        peer_id: int | str,
        text: str,
        *,
        random_id: int,
        keyboard: str | None = None,
        attachment: str | None = None,
    ) -> int:
        """messages.send; `random_id` makes a repeated call a no-op on VK's side."""
        return await self.call(
            "messages.send",
            peer_id=int(peer_id),
            message=text,
            random_id=random_id,
            keyboard=keyboard,
            attachment=attachment,
            dont_parse_links=1,
        )

    async def answer_event(self, event_id: str, user_id: int, peer_id: int, snackbar: str | None = None) -> None:
        """messages.sendMessageEventAnswer: stop the button's spinner, optionally with a snackbar."""
        data = json.dumps({"type": "show_snackbar", "text": snackbar}, ensure_ascii=False) if snackbar else None
        await self.call(
            "messages.sendMessageEventAnswer", event_id=event_id, user_id=user_id, peer_id=peer_id, event_data=data
        )

    async def upload(self, peer_id: int | str, file: OutFile) -> str:
        """Upload a file for a message to `peer_id`; return the `attachment` string."""
        return await asyncio.to_thread(self._upload_sync, int(peer_id), file)

    def close(self) -> None:
        """Close the HTTP session of the API calls."""
        self.vk.http.close()

    # ---- uploads (run in a worker thread) ---------------------------------------------------

    def _upload_sync(self, peer_id: int, file: OutFile) -> str:
        if file.kind == "photo":
            server = self.vk.method("photos.getMessagesUploadServer", {"peer_id": peer_id})
            uploaded = _post_file(server["upload_url"], "photo", file)
            saved = self.vk.method(
                "photos.saveMessagesPhoto",
                {"photo": uploaded["photo"], "server": uploaded["server"], "hash": uploaded["hash"]},
            )
            photo = saved[0]
            key = f"_{photo['access_key']}" if photo.get("access_key") else ""
            return f"photo{photo['owner_id']}_{photo['id']}{key}"
        server = self.vk.method("docs.getMessagesUploadServer", {"peer_id": peer_id, "type": "doc"})
        uploaded = _post_file(server["upload_url"], "file", file)
        if "file" not in uploaded:
            raise UploadError(str(uploaded.get("error", "no file in the upload answer"))[:200])
        saved = self.vk.method("docs.save", {"file": uploaded["file"], "title": file.name})
        doc = saved["doc"]
        return f"doc{doc['owner_id']}_{doc['id']}"


def _post_file(url: str, field: str, file: OutFile) -> dict[str, Any]:
    """POST one file as multipart to a VK upload server.

    The part's file name is ASCII (`file.<ext>`): VK keeps only the extension, the title
    goes to docs.save, and non-ASCII names in multipart headers are a known source of trouble.
    """
    extension = file.name.rsplit(".", 1)[-1].lower() if "." in file.name else "bin"
    if not extension.isascii() or not extension.isalnum():
        extension = "bin"
    response = requests.post(url, files={field: (f"file.{extension}", file.content)}, timeout=UPLOAD_TIMEOUT)
    response.raise_for_status()
    return response.json()


"""Tests of the fake VK server, driven through vk-api itself (bot side)."""

from __future__ import annotations

import asyncio
import io
import json
import queue
import threading
from typing import Any

import pytest
import requests
import vk_api
from jconfig.memory import MemoryConfig
from vk_api.bot_longpoll import VkBotEvent, VkBotEventType, VkBotLongPoll
from vk_api.keyboard import VkKeyboard, VkKeyboardColor

from handlers.vk.api_session import make_vk_session
from tests.support.fake_vk import FakeVk

USER = 111_001
OTHER = 111_002


@pytest.fixture
async def fake():
    server = FakeVk()
    await server.start()
    yield server
    await server.stop()
    assert server.internal_errors == []


def make_vk(fake: FakeVk, token: str | None = None) -> vk_api.VkApi:
    vk = vk_api.VkApi(
        token=token or fake.token,
        session=make_vk_session(fake.base_url),
        api_version="5.199",
        config=MemoryConfig,  # don't read/write vk_config.v2.json
    )
    vk.RPS_DELAY = 0  # vk-api otherwise sleeps 0.34 s between calls
    return vk


@pytest.fixture
def vk(fake):
    api = make_vk(fake)
    yield api
    api.http.close()


async def call(vk: vk_api.VkApi, method: str, **values: Any) -> Any:
    """vk-api is synchronous: never call it on the loop that runs the fake."""
    return await asyncio.to_thread(vk.method, method, values)


class Listener:
    """Runs ``VkBotLongPoll`` in a daemon thread, like the bot's VK adapter."""

    def __init__(self, vk: vk_api.VkApi, group_id: int, wait: int = 5) -> None:
        self.vk, self.group_id, self.wait = vk, group_id, wait
        self.events: queue.Queue[VkBotEvent] = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vk-longpoll")

    def _run(self) -> None:
        try:
            longpoll = VkBotLongPoll(self.vk, self.group_id, wait=self.wait)
            while not self._stop.is_set():
                for event in longpoll.check():
                    self.events.put(event)
        except BaseException as exc:  # connection refused after fake.stop() is expected
            if not self._stop.is_set():
                self.error = exc

    def start(self) -> None:
        self._thread.start()

    async def next_event(self, timeout: float = 2.0) -> VkBotEvent:
        try:
            return await asyncio.to_thread(self.events.get, True, timeout)
        except queue.Empty:
            raise AssertionError(f"no long-poll event within {timeout}s (listener error: {self.error!r})") from None

    async def close(self, fake: FakeVk) -> None:
        self._stop.set()
        await fake.stop()  # releases the pending long poll at once
        await asyncio.to_thread(self._thread.join, 3)
        assert not self._thread.is_alive()


@pytest.fixture
async def listener(fake, vk):
    lst = Listener(vk, fake.group_id)
    lst.start()
    await fake.wait_long_poll_started()
    yield lst
    await lst.close(fake)
    assert lst.error is None


# --------------------------------------------------------------- plumbing

async def test_session_routes_vk_api_to_fake_as_post_form(fake, vk):
    users = await call(vk, "users.get", user_ids="5,6")
    assert [u["id"] for u in users] == [5, 6]
    assert users[0]["first_name"] == "Имя5"  # synthetic, UTF-8 intact
    (c,) = fake.calls
    assert c["method"] == "users.get"
    assert c["http_method"] == "POST"
    assert c["params"] == {"user_ids": "5,6", "v": "5.199"}  # access_token is not recorded


async def test_wrong_token_and_unknown_method(fake):
    bad = make_vk(fake, token="nope")
    with pytest.raises(vk_api.ApiError) as err:
        await call(bad, "users.get", user_ids=1)
    assert err.value.code == 5
    good = make_vk(fake)
    with pytest.raises(vk_api.ApiError) as err:
        await call(good, "messages.frobnicate")
    assert err.value.code == 3
    assert {"key": "method", "value": "messages.frobnicate"} in err.value.error["request_params"]


async def test_group_info_members_and_permissions(fake, vk):
    fake.members = [USER, OTHER]
    fake.forbid_messages(OTHER)
    groups = await call(vk, "groups.getById", group_id=fake.group_id)
    assert groups["groups"][0]["id"] == fake.group_id
    members = await call(vk, "groups.getMembers", group_id=fake.group_id, count=1, offset=1)
    assert members == {"count": 2, "items": [OTHER]}
    allowed = await call(vk, "messages.isMessagesFromGroupAllowed", group_id=fake.group_id, user_id=USER)
    denied = await call(vk, "messages.isMessagesFromGroupAllowed", group_id=fake.group_id, user_id=OTHER)
    assert (allowed["is_allowed"], denied["is_allowed"]) == (1, 0)


# -------------------------------------------------------------- long poll

async def test_user_message_arrives_as_message_new(fake, listener):
    await fake.user_writes(USER, "Привет, бот", payload={"cmd": "start"})
    event = await listener.next_event()
    assert event.type is VkBotEventType.MESSAGE_NEW
    assert event.from_user and event.group_id == fake.group_id
    assert event.message.text == "Привет, бот"
    assert event.message.from_id == USER and event.message.peer_id == USER
    assert json.loads(event.message.payload) == {"cmd": "start"}
    assert "callback" in event.client_info.button_actions
    assert event.raw["event_id"]


async def test_callback_press_arrives_and_is_answered(fake, vk, listener):
    kb = VkKeyboard(inline=True)
    kb.add_callback_button("Записаться", color=VkKeyboardColor.POSITIVE, payload={"act": "join", "id": 7})
    msg_id = await call(vk, "messages.send", peer_id=USER, message="Семинар", random_id=1,
                        keyboard=kb.get_keyboard())
    sent = fake.last_message_to(USER)
    assert sent["message_id"] == msg_id
    assert fake.buttons_of(sent)[0]["payload"] == {"act": "join", "id": 7}

    await fake.user_taps(USER, "Записаться")
    event = await listener.next_event()
    assert event.type is VkBotEventType.MESSAGE_EVENT
    assert event.object.payload == {"act": "join", "id": 7}
    assert event.object.conversation_message_id == sent["conversation_message_id"]

    await call(vk, "messages.sendMessageEventAnswer", event_id=event.object.event_id,
               user_id=event.object.user_id, peer_id=event.object.peer_id,
               event_data=json.dumps({"type": "show_snackbar", "text": "Готово"}))
    (answer,) = await fake.wait_event_answers(1)
    assert answer["event_id"] == event.object.event_id
    assert answer["event_data"] == {"type": "show_snackbar", "text": "Готово"}

    with pytest.raises(vk_api.ApiError) as err:  # unknown event_id
        await call(vk, "messages.sendMessageEventAnswer", event_id="nope", user_id=USER, peer_id=USER)
    assert err.value.code == 100


@pytest.mark.parametrize("code", [1, 2, 3])
async def test_long_poll_failed_codes_are_survived(fake, listener, code):
    fake.long_poll_failed(code)
    await fake.wait_long_poll_started()  # the bot recovered and polls again
    await fake.user_writes(USER, f"после failed {code}")
    event = await listener.next_event()
    assert event.message.text == f"после failed {code}"
    refetches = len(fake.calls_to("groups.getLongPollServer"))
    assert refetches == (1 if code == 1 else 2)


async def test_failed_2_keeps_ts_so_events_in_between_are_kept(fake, listener):
    fake.long_poll_failed(2)
    await fake.user_writes(USER, "пока ключ обновлялся")  # pushed before the bot re-polls
    event = await listener.next_event()
    assert event.message.text == "пока ключ обновлялся"


async def test_wrong_long_poll_key_gives_failed_2(fake, listener):
    url = fake.long_poll_url
    resp = await asyncio.to_thread(
        requests.get, url, params={"act": "a_check", "key": "bad", "ts": 1, "wait": 1}, timeout=5)
    assert resp.json() == {"failed": 2}


async def test_duplicate_event_is_delivered_twice(fake, listener):
    event = await fake.user_writes(USER, "раз")
    fake.push_raw_event(event)
    first, second = await listener.next_event(), await listener.next_event()
    assert first.raw["event_id"] == second.raw["event_id"]


# --------------------------------------------------------------- messages

async def test_same_random_id_stores_one_message(fake, vk):
    a = await call(vk, "messages.send", peer_id=USER, message="раз", random_id=42)
    b = await call(vk, "messages.send", peer_id=USER, message="раз", random_id=42)
    c = await call(vk, "messages.send", peer_id=OTHER, message="раз", random_id=42)
    assert a == b != c
    assert [m["peer_id"] for m in fake.sent] == [USER, OTHER]


async def test_peer_ids_returns_list_shape(fake, vk):
    fake.forbid_messages(OTHER)
    result = await call(vk, "messages.send", peer_ids=f"{USER},{OTHER}", message="всем", random_id=5)
    assert result[0]["peer_id"] == USER and "message_id" in result[0]
    assert result[1]["peer_id"] == OTHER and result[1]["error"]["code"] == 901
    assert len(fake.sent) == 1


def _keyboard(rows: list[int], inline: bool = False, label: str = "Кнопка") -> str:
    buttons = [[{"action": {"type": "text", "label": label, "payload": "{}"}, "color": "primary"}
                for _ in range(n)] for n in rows]
    return json.dumps({"inline": inline, "buttons": buttons})


@pytest.mark.parametrize("keyboard", [
    _keyboard([5] * 8 + [1]),  # 41 buttons
    _keyboard([5] * 2 + [1], inline=True),  # 11 inline buttons
    _keyboard([6]),  # 6 in a row
    _keyboard([1], label="я" * 41),  # label > 40
    json.dumps({"buttons": [[{"action": {"type": "callback", "label": "x", "payload": json.dumps("p" * 300)}}]]}),
    "{not json",
], ids=["41-buttons", "11-inline", "6-in-row", "long-label", "long-payload", "bad-json"])
async def test_bad_keyboard_is_rejected_with_911(fake, vk, keyboard):
    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "messages.send", peer_id=USER, message="x", random_id=1, keyboard=keyboard)
    assert err.value.code == 911
    assert fake.sent == []


async def test_valid_max_keyboard_is_accepted(fake, vk):
    await call(vk, "messages.send", peer_id=USER, message="x", random_id=1, keyboard=_keyboard([5] * 8))
    assert len(fake.buttons_of(fake.last_message_to(USER))) == 40


async def test_errors_901_914_and_injected(fake, vk):
    fake.forbid_messages(OTHER)
    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "messages.send", peer_id=OTHER, message="привет", random_id=1)
    assert err.value.code == 901

    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "messages.send", peer_id=USER, message="я" * 9001, random_id=2)
    assert err.value.code == 914
    await call(vk, "messages.send", peer_id=USER, message="я" * 9000, random_id=3)

    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "messages.send", peer_id=USER, message="без random_id")
    assert err.value.code == 100

    fake.fail_next("messages.send", 9, peer_id=USER)
    await call(vk, "messages.send", peer_id=OTHER + 1, message="другому", random_id=4)  # not affected
    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "messages.send", peer_id=USER, message="флуд", random_id=5)
    assert err.value.code == 9
    await call(vk, "messages.send", peer_id=USER, message="снова можно", random_id=6)
    assert [m["text"] for m in fake.messages_to(USER)] == ["я" * 9000, "снова можно"]


async def test_error_6_is_retried_by_vk_api_itself(fake, vk):
    fake.fail_next("users.get", 6)
    users = await call(vk, "users.get", user_ids=1)  # vk-api sleeps 0.5 s, then retries
    assert users[0]["id"] == 1
    first, second = fake.calls_to("users.get")
    assert second["time"] - first["time"] >= 0.45


async def test_edit_message(fake, vk):
    mid = await call(vk, "messages.send", peer_id=USER, message="черновик", random_id=1)
    await call(vk, "messages.edit", peer_id=USER, message_id=mid, message="итог", keyboard="")
    assert fake.last_message_to(USER)["text"] == "итог"
    assert fake.edits[0]["text"] == "итог"


# ---------------------------------------------------------- uploads, wall

async def test_document_upload_pair(fake, vk):
    data = "ФИО;Школа\n".encode()
    f = io.BytesIO(data)
    f.name = "report.csv"  # vk-api takes only the extension from .name (sends file0.csv)
    upload = vk_api.VkUpload(vk)
    saved = await asyncio.to_thread(upload.document_message, f, title="Отчёт", peer_id=USER)
    doc = saved["doc"]
    assert saved["type"] == "doc" and doc["title"] == "Отчёт" and doc["ext"] == "csv"
    assert doc["size"] == len(data)
    (up,) = fake.uploads
    assert up["kind"] == "doc" and up["bytes"] == data and up["filename"] == "file0.csv"
    attachment = f"doc{doc['owner_id']}_{doc['id']}"
    await call(vk, "messages.send", peer_id=USER, attachment=attachment, random_id=9)
    assert fake.last_message_to(USER)["attachments"] == [attachment]
    body = await asyncio.to_thread(lambda: requests.get(doc["url"], timeout=5).content)
    assert body == data


async def test_photo_upload_pair(fake, vk):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    upload = vk_api.VkUpload(vk)
    photos = await asyncio.to_thread(upload.photo_messages, io.BytesIO(png), USER)
    (photo,) = photos
    assert photo["owner_id"] == -fake.group_id and photo["access_key"]
    (up,) = fake.uploads
    assert up["kind"] == "photo" and up["field"] == "file0" and up["bytes"] == png
    attachment = f"photo{photo['owner_id']}_{photo['id']}_{photo['access_key']}"
    await call(vk, "messages.send", peer_id=USER, attachment=attachment, random_id=10)
    assert fake.last_message_to(USER)["attachment"] == attachment


async def test_wall_post_recorded(fake, vk):
    res = await call(vk, "wall.post", owner_id=-fake.group_id, from_group=1,
                     message="Методическое объединение в четверг", attachments="photo-1_2")
    assert res == {"post_id": 1}
    (post,) = fake.wall_posts
    assert post["from_group"] and post["text"].startswith("Методическое")
    assert post["attachments"] == ["photo-1_2"]
    with pytest.raises(vk_api.ApiError) as err:
        await call(vk, "wall.post", owner_id=fake.group_id, message="не туда")
    assert err.value.code == 214


async def test_trailing_slash_base_and_delete(fake):
    vk = vk_api.VkApi(token=fake.token, session=make_vk_session(fake.base_url + "/"),
                      api_version="5.199", config=MemoryConfig)
    vk.RPS_DELAY = 0
    mid = await call(vk, "messages.send", peer_id=USER, message="удалить", random_id=1)
    assert await call(vk, "messages.delete", message_ids=mid, delete_for_all=1) == {str(mid): 1}
    assert fake.last_message_to(USER)["deleted"] and fake.deleted[0]["delete_for_all"]


async def test_echo_bot_end_to_end(fake, vk, listener):
    """The intended pattern: bot thread reacts to events, the test awaits fake state."""
    def bot() -> None:
        event = listener.events.get(timeout=2)
        vk.method("messages.send", {"peer_id": event.message.peer_id, "message": "Эхо: " + event.message.text,
                                    "random_id": event.message.conversation_message_id})

    bot_thread = asyncio.create_task(asyncio.to_thread(bot))
    await fake.user_writes(USER, "тест")
    (reply,) = await fake.wait_sent(1, peer_id=USER)
    assert reply["text"] == "Эхо: тест"
    await bot_thread

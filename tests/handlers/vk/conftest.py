"""Fixtures for the VK channel: the fake VK server, a client pointed at it, the running adapter."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.vk.adapter import VkAdapter
from handlers.vk.api_session import make_vk_api
from handlers.vk.client import VkClient
from tests.support.fake_vk import FakeVk


@pytest.fixture
async def fake():
    server = FakeVk()
    await server.start()
    yield server
    await server.stop()
    assert server.internal_errors == []


@pytest.fixture
def vk_client(fake):
    client = VkClient(make_vk_api(fake.token, fake.base_url, requests_per_second=None), fake.group_id)
    yield client
    client.close()


@pytest.fixture
async def bot(fake, vk_client, engine, db):
    """The VK adapter polling the fake with the real engine and database."""
    adapter = VkAdapter(vk_client, engine, db, wait=0.2, backoff_base=0.05, backoff_max=0.2, send_backoff=0.01)
    await adapter.start()
    await fake.wait_long_poll_started()
    yield adapter
    await adapter.stop(timeout=5)


class VkPerson:
    """A person writing to the community and tapping buttons; sees what the fake VK received."""

    def __init__(self, fake: FakeVk, bot: VkAdapter, user_id: int) -> None:
        self.fake = fake
        self.bot = bot
        self.user_id = user_id
        self.last: list[dict[str, Any]] = []

    async def _act(self, push) -> list[dict[str, Any]]:
        before = len(self.fake.messages_to(self.user_id))
        target = self.bot.processed + 1
        event = await push()
        await self.bot.wait_processed(target)
        self.last = self.fake.messages_to(self.user_id)[before:]
        self.event = event
        return self.last

    async def write(self, text: str, payload: Any = None, **extra: Any) -> list[dict[str, Any]]:
        return await self._act(lambda: self.fake.user_writes(self.user_id, text, payload, **extra))

    async def tap(self, label: str) -> list[dict[str, Any]]:
        """Tap a button by label on the newest messages that carry a keyboard."""
        message = self._message_with(label)
        return await self._act(lambda: self.fake.user_taps(self.user_id, label, message))

    async def start(self) -> list[dict[str, Any]]:
        """VK's «Начать» button."""
        return await self.write("Начать", payload={"command": "start"})

    def _message_with(self, label: str) -> dict[str, Any]:
        for message in reversed(self.fake.messages_to(self.user_id)):
            if any(button["label"] == label for button in self.fake.buttons_of(message)):
                return message
            if message not in self.last and message.get("keyboard"):
                break
        raise AssertionError(f"no button {label!r}; buttons: {self.buttons()}")

    def texts(self) -> list[str]:
        return [message["text"] for message in self.last]

    def text(self) -> str:
        """The text of the screen just shown (the first message of the last keyboard, or the last message)."""
        for message in self.last:
            if message.get("keyboard"):
                return message["text"]
        return self.last[-1]["text"] if self.last else ""

    def buttons(self) -> list[str]:
        """Labels of the buttons on the last reply (a long keyboard may span several messages)."""
        labels: list[str] = []
        for message in self.last:
            labels += [button["label"] for button in self.fake.buttons_of(message)]
        return labels


@pytest.fixture
def vk_person(fake, bot):
    """A factory of VK people: `vk_person(user_id)`."""

    def make(user_id: int = 300_001) -> VkPerson:
        return VkPerson(fake, bot, user_id)

    return make

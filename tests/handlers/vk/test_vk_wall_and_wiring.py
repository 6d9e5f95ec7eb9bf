"""Posting to the community wall, and building the adapter from settings."""

from __future__ import annotations

import pytest
import vk_api
from pydantic import SecretStr

from bot.settings import Settings, VkSettings
from handlers.vk.adapter import build_vk_adapter
from handlers.vk.client import VkClient
from handlers.vk.wall import publish_to_wall

USER = 300_401


async def test_an_announcement_is_posted_on_the_community_wall_on_its_behalf(fake, vk_client):
    post = await publish_to_wall(vk_client, "Школа молодого педагога: 5 декабря, 15:00.", key="event:7:announce")

    (stored,) = fake.wall_posts
    assert stored["owner_id"] == -fake.group_id and stored["from_group"]
    assert stored["text"] == "Школа молодого педагога: 5 декабря, 15:00."
    assert stored["params"]["guid"]
    assert post.url == f"https://vk.com/wall-{fake.group_id}_{post.post_id}"


async def test_the_same_key_gives_the_same_guid_so_vk_does_not_post_twice(fake, vk_client):
    await publish_to_wall(vk_client, "Анонс", key="event:7:announce")
    await publish_to_wall(vk_client, "Анонс", key="event:7:announce")

    first, second = fake.wall_posts
    assert first["params"]["guid"] == second["params"]["guid"]


async def test_a_wall_refusal_reaches_the_caller(fake, vk_client):
    other_group = VkClient(vk_client.vk, fake.group_id + 1)

    with pytest.raises(vk_api.ApiError) as error:
        await publish_to_wall(other_group, "Анонс")

    assert error.value.code == 214


async def test_an_empty_announcement_is_refused_before_calling_vk(fake, vk_client):
    with pytest.raises(ValueError):
        await publish_to_wall(vk_client, "   ")

    assert fake.calls == []


async def test_the_adapter_built_from_settings_answers_through_the_configured_base_url(fake, engine, db):
    settings = Settings(vk=VkSettings(token=SecretStr(fake.token), group_id=fake.group_id,
                                      api_base_url=fake.base_url, requests_per_second=50))
    adapter = build_vk_adapter(settings, engine, db)
    adapter.wait = 0.2
    await adapter.start()
    try:
        await fake.wait_long_poll_started()
        await fake.user_writes(USER, "Начать", payload={"command": "start"})

        await adapter.wait_processed(1)
        assert adapter.running
    finally:
        await adapter.stop()
    assert not adapter.running

    assert fake.last_message_to(USER)["text"].startswith("Здравствуйте!")
    assert fake.calls_to("messages.send")[0]["params"]["v"] == "5.199"


def test_the_adapter_needs_a_token_and_a_group(engine, db):
    with pytest.raises(ValueError, match="VK__TOKEN"):
        build_vk_adapter(Settings(vk=VkSettings(token=None, group_id=1)), engine, db)

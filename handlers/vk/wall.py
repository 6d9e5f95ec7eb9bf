"""Posts to the community wall: coordinators announce events there from the bot.

`wall.post` with a community token needs the «Стена» right in the token's access settings
(error 214 otherwise); the post is published on behalf of the community (`from_group=1`).

A coordinator's «📣 Опубликовать на стене ВК» queues an outbox row of kind "wall"
(`scheduler.dispatch.WALL_KIND`); the dispatcher hands it to the broadcaster on the transport
"vk_wall", whose sender is `WallSender` here (`build_wall_sender(settings)` at wiring time).
So a post gets the outbox's guarantees: queued once per key, retried, its outcome recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from handlers.vk.api_session import make_vk_api
from handlers.vk.client import VkClient, classify_vk_error
from scheduler.broadcaster import Outgoing, RateLimit, Rejected
from scheduler.dispatch import WALL_TRANSPORT

__all__ = ["WALL_LIMIT", "WALL_TRANSPORT", "WallPost", "WallSender", "build_wall_sender", "publish_to_wall"]

# Posts are rare (one per announced event); one a second keeps them well inside the token's ~20/s.
WALL_LIMIT = RateLimit(per_second=1.0)


@dataclass(frozen=True)
class WallPost:
    """A published post: its id and the address to share."""

    post_id: int
    url: str


async def publish_to_wall(vk: VkClient, text: str, *, key: str | None = None) -> WallPost:
    """Publish plain `text` on the community wall; return the post.

    `key` (e.g. "event:42:wall") gives the post a `guid`, with which VK refuses to publish the
    same post twice for a while: a retry after a lost answer does not double it. vk-api's
    exceptions propagate (214: the token lacks the wall right); `classify_vk_error` sorts them.
    """
    if vk.group_id is None:
        raise ValueError("posting to the wall needs the community's group id")
    if not text.strip():
        raise ValueError("a wall post needs text")
    guid = hashlib.sha256(key.encode()).hexdigest()[:32] if key else None
    result = await vk.call("wall.post", owner_id=-vk.group_id, from_group=1, message=text, guid=guid)
    post_id = int(result["post_id"])
    return WallPost(post_id=post_id, url=f"https://vk.com/wall-{vk.group_id}_{post_id}")


class WallSender:
    """The broadcaster's sender for transport "vk_wall": each `Outgoing` becomes one wall post.

    `msg.text` is the post, `msg.key` its guid; `chat_id` is ignored (there is one wall).
    Failures are classified like messages (6 → SlowDown, 5 → Fatal, 214 and the like →
    Rejected); the sender itself never retries.
    """

    transport = WALL_TRANSPORT

    def __init__(self, client: VkClient, *, owns_client: bool = False) -> None:
        self.client = client
        self._owns_client = owns_client

    async def send(self, msg: Outgoing) -> str | None:
        if self.client.group_id is None or not msg.text.strip():
            raise Rejected("a wall post needs the community's group id and text")
        try:
            post = await publish_to_wall(self.client, msg.text, key=msg.key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify_vk_error(exc) from exc
        return str(post.post_id)

    async def close(self) -> None:
        if self._owns_client:
            self.client.close()


def build_wall_sender(settings) -> WallSender:
    """A wall sender from settings (`VK__TOKEN`, `VK__GROUP_ID`, `VK__API_BASE_URL`) with its own HTTP session."""
    vk_settings = getattr(settings, "vk", settings)
    if vk_settings.token is None or not vk_settings.group_id:
        raise ValueError("posting to the VK wall needs VK__TOKEN and VK__GROUP_ID")
    vk = make_vk_api(
        vk_settings.token.get_secret_value(),
        vk_settings.api_base_url,
        requests_per_second=None,  # the broadcaster paces
        retry_too_many=False,  # error 6 must reach the broadcaster as SlowDown
    )
    return WallSender(VkClient(vk, vk_settings.group_id), owns_client=True)

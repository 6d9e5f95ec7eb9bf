"""Posts to the community wall: coordinators announce events there from the bot.

`wall.post` with a community token needs the «Стена» right in the token's access settings
(error 214 otherwise); the post is published on behalf of the community (`from_group=1`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from handlers.vk.client import VkClient

__all__ = ["WallPost", "publish_to_wall"]


@dataclass(frozen=True)
class WallPost:
    """A published post: its id and the address to share."""

    post_id: int
    url: str


async def publish_to_wall(vk: VkClient, text: str, *, key: str | None = None) -> WallPost:
    """Publish plain `text` on the community wall; return the post.

    `key` (e.g. "event:42:announce") makes a retried call return the same post instead of a
    second one: VK deduplicates posts by `guid`. vk-api's exceptions propagate (214: the
    token lacks the wall right); `handlers.vk.client.classify_vk_error` sorts them.
    """
    if vk.group_id is None:
        raise ValueError("posting to the wall needs the community's group id")
    if not text.strip():
        raise ValueError("a wall post needs text")
    guid = hashlib.sha256(key.encode()).hexdigest()[:32] if key else None
    result = await vk.call("wall.post", owner_id=-vk.group_id, from_group=1, message=text, guid=guid)
    post_id = int(result["post_id"])
    return WallPost(post_id=post_id, url=f"https://vk.com/wall-{vk.group_id}_{post_id}")

"""HTTP session for vk-api with a configurable API base URL.

vk-api (11.x) builds every method URL itself as
``https://api.vk.ru/method/<name>`` and offers no setting to change the host.
The one supported hook is ``VkApi(token=..., session=...)``: vk-api sends all
method calls through the ``requests.Session`` it is given.  We mount a
transport adapter on ``https://api.vk.ru/`` that rewrites those URLs to the
configured base (keeping path and query), so the bot can talk to a fake VK
server in tests or to a proxy/mirror in production.

The adapter also applies a default timeout: vk-api calls ``session.post``
without one, and a hung connection would otherwise block the bot forever.

Note: ``VkBotLongPoll`` and ``VkUpload`` create their *own* sessions; they talk
to whatever URLs the API returns (long-poll ``server``, ``upload_url``), so no
rewriting is needed for them.
"""

from __future__ import annotations

from typing import Any

import requests
import vk_api
from jconfig.memory import MemoryConfig
from requests.adapters import HTTPAdapter
from requests.utils import should_bypass_proxies
from vk_api.exceptions import TOO_MANY_RPS_CODE

__all__ = ["API_VERSION", "VK_API_BASE_URL", "DEFAULT_TIMEOUT", "make_vk_api", "make_vk_session"]

VK_API_BASE_URL = "https://api.vk.ru"
# (connect, read) seconds.  Plain method calls are quick; uploads go elsewhere.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)

_VK_PREFIX = VK_API_BASE_URL + "/"


class _VkApiAdapter(HTTPAdapter):
    """Rewrites ``https://api.vk.ru/...`` to ``base_url/...`` and sets a timeout."""

    def __init__(self, base_url: str | None, timeout: Any) -> None:
        super().__init__()
        self._base_url = base_url
        self._timeout = timeout

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        url = request.url or ""
        if self._base_url is not None and url.startswith(_VK_PREFIX):
            request = request.copy()
            request.url = self._base_url + url[len(VK_API_BASE_URL):]
            # Proxies were chosen by requests for api.vk.ru; honour no_proxy
            # (and localhost) for the real destination.
            if proxies and should_bypass_proxies(request.url, proxies.get("no_proxy")):
                proxies = {}
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def make_vk_session(
    api_base_url: str = VK_API_BASE_URL,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
) -> requests.Session:
    """Return a ``requests.Session`` to pass as ``VkApi(session=...)``.

    ``api_base_url`` is scheme + host (+ optional path prefix), e.g.
    ``http://127.0.0.1:8081``; requests to ``https://api.vk.ru/<path>`` are sent
    to ``<api_base_url>/<path>``.  With the default base nothing is rewritten,
    only the default timeout applies.
    """
    base = api_base_url.rstrip("/")
    session = requests.Session()
    rewrite_to = None if base == VK_API_BASE_URL else base
    session.mount(_VK_PREFIX, _VkApiAdapter(rewrite_to, timeout))
    return session


API_VERSION = "5.199"


def make_vk_api(
    token: str,
    api_base_url: str = VK_API_BASE_URL,
    *,
    requests_per_second: float | None = 20.0,
    retry_too_many: bool = True,
) -> vk_api.VkApi:
    """A community-token ``VkApi`` on :func:`make_vk_session`, API version 5.199.

    ``requests_per_second`` sets vk-api's own spacing of calls (``RPS_DELAY``;
    community tokens allow ~20/s, vk-api's default is 3/s); ``None`` or 0
    turns it off.  ``retry_too_many=False`` removes vk-api's built-in handler
    of error 6 (it sleeps 0.5 s and retries, forever), so the error reaches
    the caller: the broadcaster's sender needs that, it paces by itself.
    """
    vk = vk_api.VkApi(
        token=token,
        session=make_vk_session(api_base_url),
        api_version=API_VERSION,
        config=MemoryConfig,  # never read or write vk_config.v2.json
    )
    vk.RPS_DELAY = 1.0 / requests_per_second if requests_per_second else 0.0
    if not retry_too_many:
        vk.error_handlers.pop(TOO_MANY_RPS_CODE, None)
    return vk

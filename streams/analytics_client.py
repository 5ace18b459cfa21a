"""The Kafka adapter's `AnalyticsSource`: asks the analytics app (`handoff analytics`) over HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp

from handoff.kernel.errors import Unavailable

TIMEOUT = aiohttp.ClientTimeout(total=10)


class AnalyticsClient:
    """Reads ``GET {url}/analytics``; an app that cannot be reached is UNAVAILABLE (retry later)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/analytics"

    async def analytics(self, window: str, agent: str | None) -> dict[str, Any]:
        """The app's answer for a window, for everyone or one agent."""
        params = {"window": window} if agent is None else {"window": window, "agent": agent}
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
                async with http.get(self.url, params=params) as response:
                    if response.status != 200:
                        raise Unavailable(f"the analytics app answered HTTP {response.status}")
                    body: dict[str, Any] = await response.json()
                    return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the analytics app at {self.url} cannot be reached: {exc}") from exc

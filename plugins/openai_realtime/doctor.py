"""``aribot doctor`` for the Realtime backends: does the endpoint accept the key, without paying
for a minute of AI."""

from __future__ import annotations

import asyncio

from aribot.core.doctor import Check, key, network_failure
from aribot.core.settings import env_name
from aribot.plugins.openai_realtime.client import (
    RealtimeClosed,
    RealtimeConfig,
    RealtimeConnection,
    RealtimeUnavailable,
    auth_headers,
    realtime_url,
    redact_url,
)


async def check_realtime(cfg: RealtimeConfig, timeout: float = 5.0) -> Check:
    """Connect, read the first event, close. Nothing is sent: no audio, no session.update, so
    nothing is billed."""
    url = redact_url(realtime_url(cfg))
    fix_key = f"set {env_name('openai.api_key')} (or OPENAI_API_KEY) to " + (
        "the Azure OpenAI resource's key" if cfg.provider == "azure" else "a valid OpenAI API key")
    fix_url = f"check {key('openai.url')} and {key('openai.model')}"
    if not cfg.api_key:
        return Check("backend", False, "openai.api_key is empty", fix_key)
    conn = RealtimeConnection(realtime_url(cfg), auth_headers(cfg), open_timeout=timeout)
    events = conn.events()
    try:
        async with asyncio.timeout(timeout):
            await conn.open()
            first = await anext(events)
    except TimeoutError as exc:
        return network_failure("backend", url, exc, timeout, fix_url)
    except RealtimeUnavailable as exc:
        status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
        if status is None:
            return network_failure("backend", url, exc.__cause__, timeout, f"check {key('openai.url')}")
        if status in (401, 403):
            hint = fix_key if status == 401 else "give the key's project Realtime access, or " + fix_key
            hint += "; a GA Azure openai.url has no api-version" if cfg.provider == "azure" else ""
            return Check("backend", False, f"{url} refused the connection (HTTP {status} on the upgrade)", hint)
        what = "no Realtime endpoint at {url}" if status == 404 else "{url} refused the upgrade"
        return Check("backend", False, what.format(url=url) + f" (HTTP {status})", fix_url)
    except RealtimeClosed as exc:
        if exc.code == 3000 and "invalid_api_key" in exc.reason:
            return Check("backend", False, f"invalid API key ({url} closed with 3000)", fix_key)
        return Check("backend", False, f"{url} closed the connection (code {exc.code}: {exc.reason or 'no reason'})",
                     fix_url)
    finally:
        await events.aclose()
        await conn.close()
    if first["type"] == "session.created":
        model = (first.get("session") or {}).get("model") or cfg.model
        return Check("backend", True, f"{url} accepted the key (session.created, model {model})")
    if first["type"] == "error":
        error = first.get("error") or {}
        if error.get("code") == "invalid_api_key":
            return Check("backend", False, f"invalid API key ({url} answered invalid_api_key)", fix_key)
        return Check("backend", False, f"{url} sent error {error.get('code')}: {str(error.get('message'))[:160]}",
                     f"check {key('openai.model')} and the account's Realtime access")
    return Check("backend", False, f"{url} sent {first['type']} first, not session.created",
                 f"point {key('openai.url')} at a Realtime GA endpoint")

"""OpenAI GPT-Live as a speech backend (``[ai] backend = "gpt_live"``; reference/gpt-live.md):
a full-duplex voice model that takes turns itself, G.711 µ-law/A-law natively, tools through
Responses delegation, billed per active second. Settings: ``[gpt_live]``; the key is the OpenAI
key (``[gpt_live] api_key``, else ``[openai] api_key``, ``OPENAI_API_KEY``)."""

from __future__ import annotations

import asyncio
from typing import Any

from aribot import Setting, as_str, hookimpl, ws_url
from aribot.core.backend import BackendType, SessionSetup
from aribot.core.settings import WS_URL_ALLOWED, nonempty
from aribot.plugins.gpt_live.session import CAPABILITIES, GptLiveBackend, GptLiveConfig, start_event
from aribot.plugins.openai_realtime.client import RealtimeClosed, RealtimeConnection, RealtimeUnavailable, redact_url

SETTINGS = (
    Setting("gpt_live.url", "wss://api.openai.com/v1/live/sessions", ws_url, WS_URL_ALLOWED,
            "GPT-Live WebSocket URL (no query: the model goes in session.start)"),
    Setting("gpt_live.model", "gpt-live-1", nonempty, "a GPT-Live model name", "GPT-Live model"),
    Setting("gpt_live.voice", "marin", nonempty, "a voice name",
            "GPT-Live voice (fixed for the session): marin, cedar, alloy, ash, ballad, coral, sage, verse …"),
    Setting("gpt_live.responses_model", "gpt-5.5", as_str, "a Responses model name, or empty",
            "the Responses model that runs the tools (delegation); empty = no tools"),
    Setting("gpt_live.responses_instructions", "Use the tools to act or look things up; return verified facts only.",
            as_str, "a string", "instructions for that Responses model"),
    Setting("gpt_live.api_key", "", as_str, "a string",
            "secret: OpenAI key for GPT-Live; empty = [openai] api_key (OPENAI_API_KEY)"),
)


def live_config(settings: Any) -> GptLiveConfig:
    cfg = settings.gpt_live
    return GptLiveConfig(url=cfg.url, api_key=cfg.api_key or str(settings.get("openai.api_key") or ""),
                         model=cfg.model, voice=cfg.voice, responses_model=cfg.responses_model,
                         responses_instructions=cfg.responses_instructions)


def create(host: Any, setup: SessionSetup) -> GptLiveBackend:
    return GptLiveBackend(host, setup, live_config(host.settings))


def warnings(settings: Any) -> list[str]:
    if live_config(settings).api_key:
        return []
    return ["no OpenAI key (gpt_live.api_key, openai.api_key, OPENAI_API_KEY): GPT-Live will refuse calls and callers "
            "will hear the fallback prompt"]


async def check(settings: Any, timeout: float) -> tuple[bool, str, str]:
    """``session.start``, wait for ``session.started``, then ``session.close``: the key and model
    work, for a session of a moment (nothing is sent but the start and the close)."""
    cfg = live_config(settings)
    url = redact_url(cfg.url)
    fix = "set ARIBOT_GPT_LIVE__API_KEY or ARIBOT_OPENAI__API_KEY (or OPENAI_API_KEY) to a valid OpenAI API key"
    if not cfg.api_key:
        return False, "no OpenAI key is set", fix
    conn = RealtimeConnection(cfg.url, {"Authorization": f"Bearer {cfg.api_key}"}, open_timeout=timeout)
    setup = SessionSetup(audio_format=settings.rtp.format, instructions="aribot doctor: a check, close at once.",
                         voice=cfg.voice, tools=[])
    try:
        async with asyncio.timeout(timeout):
            await conn.open()
            await conn.send(start_event(cfg, setup, []))
            events = conn.events()
            first = await anext(events)
            if first.get("type") != "session.started":
                error = first.get("error") or {}
                return False, f"{url} refused session.start: {error.get('code')}: {error.get('message', '')}"[:300], \
                    "check gpt_live.model (ARIBOT_GPT_LIVE__MODEL) and the account's GPT-Live access"
            await conn.send({"type": "session.close", "event_id": "aribot_doctor"})
            async for event in events:
                if event.get("type") == "session.closed":
                    break
    except TimeoutError:
        return False, f"no answer from {url} within {timeout:g} s", "check gpt_live.url (or a firewall or proxy)"
    except RealtimeUnavailable as exc:
        status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
        hint = fix if status in (401, 403) else "check gpt_live.url (ARIBOT_GPT_LIVE__URL)"
        return False, f"{url} refused the connection ({exc})", hint
    except RealtimeClosed as exc:
        return False, f"{url} closed the connection (code {exc.code}: {exc.reason or 'no reason'})", fix
    finally:
        await conn.close()
    model = (first.get("session") or {}).get("model") or cfg.model
    return True, f"{url} started and closed a session (model {model})", ""


@hookimpl
def register_backends(register):
    register(BackendType("gpt_live", create, CAPABILITIES, default_voice=lambda settings: settings.gpt_live.voice,
                         warnings=warnings, check=check,
                         description="OpenAI GPT-Live: full duplex, the model takes turns, tools by delegation"))


@hookimpl
def register_settings(register):
    for setting in SETTINGS:
        register(setting)

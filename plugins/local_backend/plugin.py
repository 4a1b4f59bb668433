"""The local voice backend (``[ai] backend = "local"``): an audio-path echo test with no AI account.

At start-up the plugin runs aribot's own GA Realtime server (``aribot.plugins.local_backend.realtime``)
on a free loopback port, and its backend talks to it with the openai_realtime plugin's Realtime
client, configured for that server (no other backend's settings are read or changed). Each caller turn (energy
turn detection, ``[local] energy_threshold``) is answered with a short spoken phrase (espeak-ng)
followed by the caller's own words played back, and transcribed offline (pocketsphinx), so the
dashboard shows words. Responses the core asks for itself (no-input re-prompts, goodbyes, a
greeting) get a fitting fixed phrase.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from typing import Any

from aribot import Setting, as_bool, as_str, hookimpl, number
from aribot.core.backend import BackendType, BackendUnavailable, SessionSetup
from aribot.plugins.local_backend.realtime.script import AudioOutput, Script, Turn
from aribot.plugins.local_backend.realtime.server import RealtimeServer
from aribot.plugins.local_backend.voice import Recogniser, VoiceError, synthesize
from aribot.plugins.openai_realtime.client import RealtimeConfig
from aribot.plugins.openai_realtime.session import CAPABILITIES, RealtimeBackend

log = logging.getLogger("aribot.local_backend")

PHRASES = {
    "heard": "I heard you say:",
    "hello": "Hello! This is the aribot local echo test. Say something, and I will play it back to you.",
    "still_there": "Are you still there? Say something, and I will play it back.",
    "goodbye": "Thank you for testing aribot. Goodbye!",
    "empty": "I did not catch that. Please say it again.",
}
PAUSE_MS = 250
KEEP_RECORDS = 500  # events per connection the local backend keeps for its own look-ups


@dataclass
class LocalBackend:
    """The server and the phrases it speaks, for one running App."""

    voice: str = "en-us"
    words_per_minute: int = 160
    energy_threshold: int = 300
    transcribe: bool = True
    max_echo_seconds: float = 10.0
    fmt: str = "ulaw"
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    phrases: dict[str, bytes] = field(default_factory=dict, repr=False)
    server: RealtimeServer | None = None
    recogniser: Recogniser = field(default_factory=Recogniser)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def _silence(self, ms: int) -> bytes:
        return (b"\xff" if self.fmt == "ulaw" else b"\xd5") * (8 * ms)

    def compose(self, trigger: str, user_audio: bytes, params: dict[str, Any]) -> Turn:
        """The answer to one response request (see the module docstring)."""
        if trigger == "vad":
            echo = user_audio[: int(self.max_echo_seconds * 8000)]
            if len(echo) < 1600:
                return Turn((AudioOutput(self.phrases["empty"], PHRASES["empty"]),))
            audio = self.phrases["heard"] + self._silence(PAUSE_MS) + echo + self._silence(PAUSE_MS)
            return Turn((AudioOutput(audio, PHRASES["heard"] + " (your own words, played back)"),))
        instructions = str(params.get("instructions") or "").lower()
        if "goodbye" in instructions:
            key = "goodbye"
        elif trigger == "idle_timeout" or "still there" in instructions:
            key = "still_there"
        else:
            key = "hello"
        return Turn((AudioOutput(self.phrases[key], PHRASES[key]),))

    async def start(self) -> None:
        """Synthesise the phrases (once), then serve on a free loopback port."""
        loop = asyncio.get_running_loop()
        for key, text in PHRASES.items():
            self.phrases[key] = await loop.run_in_executor(
                None, lambda t=text: synthesize(t, voice=self.voice, words_per_minute=self.words_per_minute,
                                                fmt=self.fmt))
        script = Script(energy_threshold=self.energy_threshold, obfuscation=False, delta_bytes=(800, 1600),
                        transcribe=self.recogniser.transcribe if self.transcribe else None, compose=self.compose)
        # a call may last an hour: each connection keeps only its recent events (bounded memory)
        self.server = RealtimeServer(api_key=self.api_key, script=script, keep_records=KEEP_RECORDS)
        await self.server.start("127.0.0.1", 0)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


def _voice_name(value: Any) -> str:
    text = as_str(value).strip()
    if not text or not all(c.isalnum() or c in "-_+" for c in text):
        raise ValueError(value)
    return text


@hookimpl
def register_settings(register):
    register(Setting("local.voice", "en-us", _voice_name, "an espeak-ng voice name such as en-us",
                     "espeak-ng voice the local backend speaks with"))
    register(Setting("local.words_per_minute", 160, number(int, 80, 450), "words per minute 80..450",
                     "espeak-ng speaking rate"))
    register(Setting("local.energy_threshold", 300, number(int, 1, 32767), "an RMS level 1..32767 (16-bit linear)",
                     "a 20 ms window louder than this RMS (16-bit linear; 300 is about -40 dBFS) is caller speech"))
    register(Setting("local.transcribe", True, as_bool, "true or false",
                     "transcribe caller turns with pocketsphinx (offline, US English) so the dashboard shows words"))
    register(Setting("local.max_echo_seconds", 10.0, number(float, 1, 120), "seconds 1..120",
                     "the longest caller turn played back"))


# the local server of each running App, found through the App's settings object (a call's host has it)
SERVERS: "weakref.WeakKeyDictionary[Any, LocalBackend]" = weakref.WeakKeyDictionary()


class LocalRealtimeBackend(RealtimeBackend):
    """The Realtime backend, pointed at this App's local server."""


def create(host: Any, setup: SessionSetup) -> RealtimeBackend:
    server = SERVERS.get(host.settings)
    if server is None or server.server is None:
        raise BackendUnavailable("the local voice server is not running (local is not ai.backend or in ai.allowed)")
    config = RealtimeConfig(url=server.url, api_key=server.api_key)
    return LocalRealtimeBackend(host, setup, config)


async def check(settings: Any, timeout: float) -> tuple[bool, str, str]:
    """espeak-ng speaks (a word, locally); pocketsphinx is checked when transcripts are on."""
    try:
        await asyncio.to_thread(synthesize, "ok", voice=settings.local.voice)
    except VoiceError as exc:
        return False, str(exc), "run scripts/setup, or apt-get install espeak-ng"
    return True, f"espeak-ng speaks with voice {settings.local.voice}; no account needed", ""


@hookimpl
def register_backends(register):
    register(BackendType("local", create, CAPABILITIES, default_voice=lambda settings: "marin", check=check,
                         description="aribot's offline echo test: espeak-ng phrases, your own words played back"))


@hookimpl
async def startup(app):
    if "local" not in {str(app.settings.ai.backend), *map(str, app.settings.ai.allowed)}:
        return
    cfg = app.settings.local
    backend = LocalBackend(voice=cfg.voice, words_per_minute=cfg.words_per_minute,
                           energy_threshold=cfg.energy_threshold, transcribe=cfg.transcribe,
                           max_echo_seconds=cfg.max_echo_seconds, fmt=app.settings.rtp.format)
    try:
        await backend.start()
    except VoiceError as exc:
        raise RuntimeError(f"the local backend cannot start: {exc}") from None
    SERVERS[app.settings] = backend
    app.extensions["local_backend"] = backend
    log.info("local backend (espeak-ng + %s) serving on %s: each caller turn is answered with a phrase and "
             "the caller's own words", "pocketsphinx" if cfg.transcribe else "no transcription", backend.url)


@hookimpl
async def shutdown(app):
    backend = app.extensions.pop("local_backend", None)
    SERVERS.pop(app.settings, None)
    if backend is not None:
        await backend.stop()

"""Call recording, as a plugin (``[recording]``, off by default): one stereo WAV per call, left =
the caller, right = the AI, exactly the audio aribot received and sent, lined up in time, written
as the call goes (plugins/recording/recorder.py, wav.py).

- The consent (``[recording] consent``): a ``sound:`` prompt Asterisk plays, or a sentence the AI
  says, heard before the call is listened to (before the activation mode and the greeting: a
  ``Call.preludes`` step). If it could not be played, the call is not recorded.
- Per call, the dialplan may opt out: ``Set(ARIBOT_RECORD=no)`` before ``Stasis()``.
- The call's history record points at the file (``calls.recording``); the history's retention
  purge deletes the file with the record. The dashboard's history page plays it
  (``/recording/{call_id}``, route.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from aribot import Setting, SettingsError, as_bool, as_str, hookimpl
from aribot.core import events as ev
from aribot.core.choices import CONTROL, SOUND
from aribot.core.settings import nonempty
from aribot.plugins.recording.recorder import CallRecording, Recordings, is_sound

__all__ = ["CallRecording", "Recordings"]
log = logging.getLogger("aribot.recording")
MAX_SENTENCE = 500
OTHER_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S*")   # a media URI (file:, recording: …), not a sentence


def consent_setting(value: Any) -> str:
    """``[recording] consent``: empty, ``sound:name`` (no "."), or a sentence for the AI."""
    text = as_str(value).strip()
    if not text:
        return ""
    if text.startswith("sound:"):
        if not SOUND.fullmatch(text):
            raise ValueError(value)
        return text
    if OTHER_URI.fullmatch(text) or len(text) > MAX_SENTENCE or CONTROL.search(text):
        raise ValueError(value)
    return text


def folder_setting(value: Any) -> str:
    text = nonempty(value)
    if "\0" in text:
        raise ValueError(value)
    return text


@hookimpl
def register_settings(register):
    register(Setting("recording.enabled", False, as_bool, "true or false",
                     "record every call as a stereo WAV (caller left, AI right); personal data: docs/security.md"))
    register(Setting("recording.path", "recordings", folder_setting, "a folder path",
                     "folder of the recordings, created private (0700, files 0600); relative to [storage] data_dir"))
    register(Setting("recording.consent", "", consent_setting,
                     f"empty, a sound: prompt such as sound:call-recorded, or a sentence of at most {MAX_SENTENCE} "
                     "characters (not another media URI)",
                     "heard before the conversation: a sound: prompt Asterisk plays, or a sentence the AI says; "
                     "empty = none (recording without consent may be unlawful)"))


@hookimpl
async def startup(app):
    cfg = app.settings.get("recording") or {}
    if not cfg.get("enabled", False):
        return
    try:
        folder = Path(str(cfg.get("path") or "recordings")).expanduser()
        folder = folder if folder.is_absolute() else app.data_dir / folder
    except SettingsError as exc:
        log.error("recording: %s; calls are not recorded in this run", exc)
        return
    service = Recordings(app, folder, str(cfg.get("consent") or ""))
    try:
        repaired = await asyncio.get_running_loop().run_in_executor(service.executor, service.prepare_folder)
    except OSError as exc:
        service.close()
        log.error("recording: cannot use the folder %s (%s); calls are not recorded in this run, they are still "
                  "served", folder, exc.strerror or exc)
        return
    app.extensions["recording"] = service
    app.bus.subscribe(ev.CallStarted, lambda event: _on_call_started(app, service, event), owner="recording")
    consent = service.consent
    log.info("recording calls to %s%s%s", folder.resolve(),
             f" (consent: {'Asterisk plays ' if is_sound(consent) else 'the AI says '}{consent!r})" if consent else "",
             f"; repaired the header of {repaired} file(s) left by a crash" if repaired else "")
    if not consent:
        log.warning("recording: calls are recorded without a consent prompt ([recording] consent is empty); "
                    "recording a call without telling the caller may be unlawful where you are")
    if "history" not in app.extensions:
        log.warning("recording: the call history is off, so recordings are neither listed nor deleted after "
                    "[history] retention_days; delete them from %s yourself", folder)


def _on_call_started(app: Any, service: Recordings, event: ev.CallStarted) -> None:
    call = app.calls.get(event.call_id)
    if call is not None and not getattr(call, "overflow", False) and hasattr(call, "preludes"):
        call.preludes.append(lambda: service.prelude(call))


@hookimpl
async def shutdown(app):
    service = app.extensions.pop("recording", None)
    if service is None:
        return
    app.bus.disconnect_owner("recording")
    for recording in list(service.live.values()):
        recording.close()
    await asyncio.get_running_loop().run_in_executor(None, service.close)

"""Recording calls: one stereo WAV per call (plugins/recording/wav.py), written as the call goes.

On the event loop a recording only appends bytes (it is a call listener, the aligned tap of
core/audio_tap.py, like listen-in) and, every ``FLUSH_S``, takes the aligned audio due and queues
it; one worker thread (shared by every call, FIFO) decodes it to PCM and writes it, so the loop that
paces every call's audio never waits for a disk. Memory is bounded per call: the tap keeps at most
``SLACK_S`` a side, and at most ``MAX_PENDING_S`` of audio waits for a slow disk (beyond it new audio
is dropped, counted, one log line). A file that cannot be written (an unwritable folder, a full disk)
is one log line, and the call goes on unrecorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aribot.core.ari import AriError, AriNotFound
from aribot.core.audio_tap import AlignedTap
from aribot.plugins.recording.wav import WavFile, repair, stereo_pcm

log = logging.getLogger("aribot.recording")
FLUSH_S = 0.5          # aligned audio is taken and handed to the writer this often (the header follows)
DELAY_S = 0.1          # a side may be this late (RTP jitter) before it is padded with silence
SLACK_S = 2.0          # a side ahead of real time (a burst after a stall) keeps at most this much
MAX_PENDING_S = 30.0   # audio waiting for a slow disk; beyond, new audio is dropped (counted)
MAX_PENDING = int(MAX_PENDING_S / FLUSH_S)   # the same in pieces waiting
CONSENT_LIMIT_S = 60.0  # longest aribot waits for the AI to have said the consent
OPT_OUT = "ARIBOT_RECORD"   # channel variable: "no" (or 0, false, off) = do not record this call
NO = {"no", "0", "false", "off"}
SAFE = re.compile(r"[^A-Za-z0-9._-]")
CONSENT_INSTRUCTIONS = ("Before anything else, say exactly this sentence to the caller, word for word, and nothing "
                        "more: {sentence}")


def is_sound(consent: str) -> bool:
    """A consent Asterisk plays (``sound:...``), not a sentence for the AI."""
    return consent.startswith("sound:")


class Recordings:
    """The recording service of one running App (``app.extensions["recording"]``)."""

    def __init__(self, app: Any, folder: Path, consent: str) -> None:
        self.app = app
        self.folder = folder
        self.consent = consent
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="aribot-recording")
        self.live: dict[str, CallRecording] = {}

    # --- start-up (worker thread) --------------------------------------------------------------
    def prepare_folder(self) -> int:
        """Create the folder private (0700), check it is writable, and repair the headers of files
        left by a crash; returns how many were repaired. Raises OSError."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = self.folder.stat().st_mode & 0o777
        if mode & 0o077:
            self.folder.chmod(0o700)
            log.warning("recording: %s was open to others (mode %o); made it private (700)", self.folder, mode)
        probe = self.folder / f".aribot-write-test-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        probe.unlink()
        repaired = 0
        for path in self.folder.glob("*.wav"):
            try:
                repaired += repair(path)
            except OSError as exc:
                log.warning("recording: could not check %s (%s); left as it is", path, exc.strerror)
        return repaired

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    # --- a call --------------------------------------------------------------------------------
    async def prelude(self, call: Any) -> None:
        """Before the call is listened to: the opt-out, then the recording starts and the consent
        is heard (``Call.preludes``)."""
        if await opted_out(call):
            log.info("call %s: not recorded (channel variable %s)", call.id, OPT_OUT)
            return
        recording = self.start(call)
        if not self.consent:
            return
        try:
            heard, why = await self.play_consent(call)
        except Exception as exc:   # e.g. the AI session failed: no consent heard
            heard, why = False, repr(exc)
        if not heard and not call.stopping:
            log.warning("call %s: the recording consent was not heard (%s); this call is not recorded", call.id, why)
            recording.discard()

    def start(self, call: Any) -> CallRecording:
        started = time.strftime("%Y%m%d-%H%M%S", time.gmtime(call.started_at))
        path = self.folder / f"{started}-{SAFE.sub('_', call.id)[:80]}.wav"
        recording = CallRecording(self, call, path)
        self.live[call.id] = recording
        recording.begin()
        return recording

    async def play_consent(self, call: Any) -> tuple[bool, str]:
        """Play the consent (Asterisk) or have the AI say it, and wait until it was heard."""
        if is_sound(self.consent):
            played = await call.play_prompt([self.consent], "recording consent")
            return played, "" if played else "the prompt did not play"
        answered = await call.ask_ai(CONSENT_INSTRUCTIONS.format(sentence=self.consent))
        try:
            status = await asyncio.wait_for(asyncio.shield(answered), CONSENT_LIMIT_S)
        except asyncio.TimeoutError:
            return False, f"the AI did not say it within {CONSENT_LIMIT_S:g} s"
        await call.wait_playout(CONSENT_LIMIT_S)
        return status == "completed", f"the AI's answer ended {status}"

    def history(self) -> Any:
        return self.app.extensions.get("history")


async def opted_out(call: Any) -> bool:
    """The dialplan set ``ARIBOT_RECORD=no`` on the channel."""
    value = (getattr(call.channel, "channelvars", None) or {}).get(OPT_OUT)
    if value is None:
        try:
            value = ((await call.ari.call("get_variable", channelId=call.id, variable=OPT_OUT)) or {}).get("value")
        except AriNotFound:
            return False
        except AriError as exc:
            log.warning("call %s: could not read %s (%s); recording it", call.id, OPT_OUT, exc)
            return False
    return str(value or "").strip().lower() in NO


class CallRecording(AlignedTap):
    """One call's recording: a call listener on the loop, its file in the service's worker thread."""

    def __init__(self, service: Recordings, call: Any, path: Path) -> None:
        super().__init__(call.settings.rtp.format, delay_s=DELAY_S, slack_s=SLACK_S, max_due_s=None,
                         by_arrival=True)
        self.service, self.call, self.path = service, call, path
        self.file = WavFile(path)
        self.pending: deque[tuple[bytes, bytes] | None] = deque()   # None: close the file
        self.dropped_samples = 0      # per side: audio a stalled disk could not take
        self.failed = ""              # why the file cannot be written (worker thread)
        self.closed = False
        self.discarded = False
        self._job = False
        self._task: asyncio.Task[Any] | None = None

    # --- the loop --------------------------------------------------------------------------------
    def begin(self) -> None:
        store = self.service.history()
        if store is not None:   # first: a crash mid-call leaves a record that points at the file
            store.set_recording(self.call.id, str(self.path))
        self.service.executor.submit(self._open)
        self.call.add_listener(self)
        self._task = self.call.spawn(self.run())
        log.info("call %s: recording to %s", self.call.id, self.path)

    async def run(self) -> None:
        while not self.closed:
            await asyncio.sleep(FLUSH_S)
            self._queue(self.take())

    def _queue(self, sides: tuple[bytes, bytes] | None) -> None:
        if sides is None or self.failed:
            return
        if len(self.pending) >= MAX_PENDING:
            self.dropped_samples += len(sides[0])
            if self.dropped_samples == len(sides[0]):
                log.error("call %s: more than %g s of recording wait for the disk (%s); new audio is dropped, "
                          "counted", self.call.id, MAX_PENDING_S, self.path.parent)
            return
        self.pending.append(sides)
        self._schedule()

    def _schedule(self) -> None:
        if not self._job:
            self._job = True
            self.service.executor.submit(self._drain)

    def close(self) -> None:
        """The call ends (``Call`` closes its listeners): what is due is written, then the file closed."""
        if self.closed:
            return
        self.closed = True
        self.call.remove_listener(self)
        if self._task is not None:
            self._task.cancel()
        if not self.discarded:
            self._queue(self.take(final=True))
        self.pending.append(None)
        self._schedule()
        self.service.live.pop(self.call.id, None)
        if not self.discarded:
            seconds = self.sent_samples / 8000
            log.info("call %s: recorded %.1f s to %s%s", self.call.id, seconds, self.path,
                     f" (dropped: {self.dropped_samples / 8000:.1f} s for a slow disk)" if self.dropped_samples else "")

    def discard(self) -> None:
        """Stop and delete this recording (no consent heard); the history forgets it."""
        self.discarded = True
        self.pending.clear()
        self.close()
        store = self.service.history()
        if store is not None:
            store.set_recording(self.call.id, None)

    # --- the worker thread -----------------------------------------------------------------------
    def _open(self) -> None:
        try:
            self.file.open()
        except OSError as exc:
            self._fail(exc)
            store = self.service.history()
            if store is not None:   # no file: the record does not point at one
                store.set_recording(self.call.id, None)

    def _drain(self) -> None:
        self._job = False   # before taking: audio queued from now on schedules a new job
        while self.pending:
            sides = self.pending.popleft()
            if sides is None:
                self._finish()
                continue
            if self.failed:
                continue
            try:
                self.file.append(stereo_pcm(sides[0], sides[1], self.format))
            except OSError as exc:
                self._fail(exc)

    def _finish(self) -> None:
        try:
            self.file.close()
        except OSError as exc:
            self._fail(exc)
        if self.discarded:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.error("call %s: could not delete the recording %s (%s)", self.call.id, self.path, exc.strerror)

    def _fail(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = exc.strerror or str(exc)
            log.error("call %s: cannot write the recording %s (%s); the rest of this call is not recorded, the "
                      "call goes on", self.call.id, self.path, self.failed)

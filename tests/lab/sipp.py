"""Drive sipp 3.6.1 (Debian sip-tester) as the lab's caller.

Observed with the lab Asterisk 22.10.1 (loopback):

* ``rtp_stream`` sends from the ``-mp`` port (the SDP's ``[media_port]``): PT 0, 160-byte
  payloads, seq +1 from 0, timestamp +160 from 864, one SSRC, **no marker bit**, paced at
  20.0 ms on average with 16-24 ms jitter (sipp's scheduler tick), no silence after the file.
* Asterisk sends the call's audio to that same port, so an ``RtpSniffer`` watching
  ``media_port`` hears what the caller hears. ``Echo()`` returns every frame byte-exact,
  from the very first packet, with the caller's seq/timestamp mirrored.
* A last partial frame is filled from the start of the file (sipp loops), so ``audio``
  must be whole 160-byte frames; leading silence (0xFF) is sent and echoed like any audio.
* ``play_pcap_audio`` DTMF packets (PT 101) also leave from ``-mp`` with the pcap's own SSRC
  and sequence numbers. The scenario pauses the voice stream while a key plays (as a phone
  does): with voice of another SSRC between the key's three end packets, Asterisk 22 reports
  the key again, and that was the suite's DTMF flake (tests/lab/dtmf_pcaps.py).
* ``codec="alaw"``: sipp offers only PCMA and streams PT 8; it calls from ``SIPP_ALAW_ADDRESS``
  (127.0.0.2), which the lab identifies as its A-law-only endpoint ``sipp-alaw`` (media stays
  on 127.0.0.1, so the sniffer hears it the same way).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aribot.sandbox.asterisk_config import SIPP_ALAW_ADDRESS
from aribot.sandbox.ports import free_udp_port, free_udp_port_range
from tests.lab.audio import FRAME_BYTES, RATE
from tests.lab.sipp_scenario import (
    DTMF_PCAP_MS,
    LOG_BYE_RECEIVED,
    LOG_BYE_SENT,
    LOG_BYE_TIMEOUT,
    build_scenario,
)  # fmt: skip

SIPP = "/usr/bin/sipp"
_TAIL = 2000


class _Lab(Protocol):
    sip_port: int


@dataclass
class SippResult:
    """How one sipp call went. ``ok``: sipp succeeded and the call ended as requested."""

    returncode: int
    ok: bool
    error: str  # "" when ok, else one line saying what went wrong
    hangup_by: str | None  # "caller" (we sent BYE), "server" (BYE received) or None
    media_port: int
    sip_port: int
    started: float  # time.time() when sipp was launched
    ended: float  # time.time() when sipp exited
    stdout_tail: str
    stderr_tail: str
    workdir: Path

    @property
    def bye_received(self) -> bool:
        return self.hangup_by == "server"

    @property
    def bye_sent(self) -> bool:
        return self.hangup_by == "caller"


@dataclass
class SippCaller:
    """One sipp UAC call into ``lab``: writes its files into ``workdir`` and runs sipp once."""

    lab: _Lab
    workdir: Path
    audio: bytes
    extension: str = "100"
    hangup: str = "caller"
    hold_ms_after_audio: int = 1000
    wait_bye_timeout_ms: int = 10000
    dtmf: Sequence[tuple[int, str]] = ()
    audio_delay_ms: int = 0
    codec: str = "ulaw"  # or "alaw": ``audio`` is A-law, the call goes to the lab's A-law-only endpoint
    sip_port: int = field(default_factory=free_udp_port)
    media_port: int = field(default_factory=lambda: free_udp_port_range(4)[0])

    @property
    def sip_address(self) -> str:
        """The address sipp calls from: the lab tells its µ-law and A-law endpoints apart by it."""
        return SIPP_ALAW_ADDRESS if self.codec == "alaw" else "127.0.0.1"

    @property
    def audio_ms(self) -> int:
        return len(self.audio) * 1000 // RATE

    @property
    def deadline_s(self) -> float:
        """How long the call may take in the worst case, plus a margin."""
        last_dtmf = max((offset for offset, _ in self.dtmf), default=0)
        paused = len(self.dtmf) * DTMF_PCAP_MS   # the voice pauses while each key plays
        media = self.audio_delay_ms + max(self.audio_ms + paused + self.hold_ms_after_audio, last_dtmf + paused)
        waiting = self.wait_bye_timeout_ms if self.hangup != "caller" else 0
        return (media + waiting) / 1000 + 10.0

    def prepare(self) -> Path:
        """Write the audio (in ``codec``) and the scenario; return the scenario path."""
        if len(self.audio) % FRAME_BYTES:
            raise ValueError(
                f"audio must be whole 20 ms frames ({FRAME_BYTES} B); got {len(self.audio)} B "
                "(sipp would fill the last frame from the start of the file)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        audio_file = self.workdir / f"caller.{self.codec}"
        audio_file.write_bytes(self.audio)
        scenario = self.workdir / "uac.xml"
        scenario.write_text(build_scenario(
            audio_file if self.audio else None, self.audio_ms, hangup=self.hangup, dtmf=self.dtmf,
            hold_ms_after_audio=self.hold_ms_after_audio,
            wait_bye_timeout_ms=self.wait_bye_timeout_ms, audio_delay_ms=self.audio_delay_ms, codec=self.codec,
        ))  # fmt: skip
        for name in ("logs.log", "errors.log", "messages.log"):
            (self.workdir / name).unlink(missing_ok=True)
        return scenario

    def command(self, scenario: Path) -> list[str]:
        """The sipp command line."""
        w = self.workdir
        return [
            SIPP, f"127.0.0.1:{self.lab.sip_port}", "-sf", str(scenario), "-s", self.extension,
            "-i", self.sip_address, "-p", str(self.sip_port), "-mi", "127.0.0.1",
            "-mp", str(self.media_port), "-m", "1", "-l", "1", "-nostdin",
            "-timeout", f"{int(self.deadline_s)}s", "-timeout_error",
            "-trace_err", "-error_file", str(w / "errors.log"),
            "-trace_logs", "-log_file", str(w / "logs.log"),
            "-trace_msg", "-message_file", str(w / "messages.log"),
        ]  # fmt: skip

    async def run(self) -> SippResult:
        """Run the call to completion (killing sipp if it overruns) and return the result."""
        cmd = self.command(self.prepare())
        started = time.time()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.workdir, start_new_session=True,
        )  # fmt: skip
        killed = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.deadline_s + 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            killed = True
            _killpg(proc.pid)
            out, err = await proc.communicate()
            if isinstance(exc, asyncio.CancelledError):
                raise
        return self._result(proc.returncode or 0, killed, started, out, err)

    def _result(self, rc: int, killed: bool, started: float, out: bytes, err: bytes) -> SippResult:
        logs = _read(self.workdir / "logs.log")
        hangup_by = "server" if LOG_BYE_RECEIVED in logs else None
        if LOG_BYE_SENT in logs:
            hangup_by = "caller"
        error = ""
        if killed:
            error = f"sipp overran {self.deadline_s + 5.0:.0f} s and was killed"
        elif LOG_BYE_TIMEOUT in logs:
            error = f"no BYE from the server within {self.wait_bye_timeout_ms} ms after the audio"
        elif self.hangup == "caller" and hangup_by == "server":
            error = "the server hung up (BYE) before the caller did"
        elif rc != 0:
            detail = _last_event(_read(self.workdir / "errors.log")) or _last_event(err.decode())
            error = f"sipp exited with {rc}: {detail or 'see ' + str(self.workdir)}"
        offered = re.search(r"^m=audio (\d+) ", _read(self.workdir / "messages.log"), re.MULTILINE)
        if not error and offered and int(offered.group(1)) != self.media_port:
            # sipp moves on when its -mp port is taken; a sniffer on media_port would hear a stranger
            error = f"sipp offered media port {offered.group(1)}, not {self.media_port} (port taken)"
        return SippResult(
            returncode=rc, ok=not error, error=error, hangup_by=hangup_by,
            media_port=self.media_port, sip_port=self.sip_port, started=started,
            ended=time.time(), stdout_tail=out.decode(errors="replace")[-_TAIL:],
            stderr_tail=err.decode(errors="replace")[-_TAIL:], workdir=self.workdir,
        )  # fmt: skip


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


_EVENT = re.compile(r"(?m)^\d{4}-\d\d-\d\d\t[\d:.]+\t[\d.]+: (.*)$")


def _last_event(text: str) -> str:
    """The first line of sipp's last logged event (its error files prefix each with a date)."""
    events = _EVENT.findall(text)
    return events[-1].strip() if events else ""


async def run_call(
    lab: _Lab, *, extension: str = "100", audio: bytes, hangup: str = "caller",
    hold_ms_after_audio: int = 1000, wait_bye_timeout_ms: int = 10000,
    dtmf: Sequence[tuple[int, str]] = (), sip_port: int | None = None,
    media_port: int | None = None, workdir: Path,
) -> SippResult:  # fmt: skip
    """Call ``extension`` on ``lab`` with sipp, stream ``audio`` (µ-law), send ``dtmf``
    ((offset ms from the audio start, digit) pairs) and hang up as ``hangup`` says."""
    caller = SippCaller(
        lab, workdir, audio, extension=extension, hangup=hangup, dtmf=dtmf,
        hold_ms_after_audio=hold_ms_after_audio, wait_bye_timeout_ms=wait_bye_timeout_ms,
    )  # fmt: skip
    if sip_port is not None:
        caller.sip_port = sip_port
    if media_port is not None:
        caller.media_port = media_port
    return await caller.run()

"""sipp 3.6.1 as the lab's *callee*: a UAS the lab Asterisk dials (outbound calls, transfers).

API (stable; other helpers build on it)::

    callee = SippCallee(workdir, answer="answer", answer_after_ms=0, audio=b"", dtmf="",
                        hold_ms=5000, hangup="either", ring_ms=30000, invite_wait_s=30.0)
    sniffer.watch(callee.media_port)          # hear what the callee hears (RtpSniffer)
    await callee.start()                      # sipp listens on 127.0.0.1:callee.sip_port
    dial = callee.dial_string                 # "PJSIP/sipp/sip:<user>@127.0.0.1:<sip_port>"
    ... make Asterisk dial ``dial`` (ARI originate, Dial(), aribot's POST /calls) ...
    result = await callee.wait()              # CalleeResult; or ``await callee.run()`` = start + wait
    await callee.stop()                       # kill sipp if still running (idempotent)

``answer``:
  * ``"answer"``: 100, 180, then after ``answer_after_ms`` a 200 OK (µ-law PCMU + RFC 4733 PT 101);
    after the ACK it plays ``audio`` (µ-law bytes, whole 160-byte frames, like SippCaller's), then
    sends each digit of ``dtmf`` (0-9 * #, RFC 4733 from Debian's pcaps, 200 ms each, the voice
    stream paused meanwhile), then holds ``hold_ms``. ``hangup``: "either" (default) ends on the
    caller's BYE or sends BYE itself after the hold; "callee" must be the one to send BYE (a BYE
    before is an error); "caller" expects the caller's BYE within the hold (none is an error and
    the callee then sends BYE so nothing is left behind). A BYE is answered at any time.
  * ``"busy"``: 100, then 486 Busy Here.
  * ``"no_answer"``: 100, 180, then rings until the caller CANCELs (answered 200 + 487); after
    ``ring_ms`` without a CANCEL it gives up with 480 and reports an error.
  A CANCEL while ringing ends any mode (``cancelled``; an error unless ``answer="no_answer"``).

``media_port`` is the SDP's audio port: sipp sends from it and Asterisk sends the call's audio to
it, so ``RtpSniffer.watch(media_port)`` captures what the callee hears (``tests.lab.calls.heard``).
``user`` is the Request-URI user (default "callee"). Ports are free random loopback ports (never
5060). The lab needs nothing more than its ``sipp`` endpoint: PJSIP dials the URI given after the
endpoint name, and sipp's answers come from 127.0.0.1, which the endpoint is identified by.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from aribot.sandbox.ports import _bindable, free_udp_port, free_udp_port_range
from tests.lab.audio import FRAME_BYTES, RATE
from tests.lab.sipp import _TAIL, SIPP, _killpg, _last_event, _read
from tests.lab.sipp_scenario import DTMF_PCAP_MS, _log, _media_timeline, _pause

ANSWER_MODES = ("answer", "busy", "no_answer")
CALLEE_HANGUPS = ("either", "callee", "caller")
DTMF_GAP_MS = 100  # silence between two keys (and before the first, after the audio)

# Log lines (sipp <log> actions) that tell the Python side what happened.
LOG_INVITE = "aribot-callee: invite received"
LOG_ANSWERED = "aribot-callee: answered"
LOG_BUSY = "aribot-callee: busy sent"
LOG_CANCELLED = "aribot-callee: cancelled"
LOG_RING_TIMEOUT = "aribot-callee: no cancel"
LOG_BYE_RECEIVED = "aribot-callee: bye received"
LOG_BYE_SENT = "aribot-callee: bye sent"
LOG_NO_BYE = "aribot-callee: no bye from caller"

_TAG = ";tag=[pid]SIPpTag01[call_number]"
_REPLY = """  <send><![CDATA[
SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:]{tag}
[last_Call-ID:]
{cseq}
Contact: <sip:[service]@[local_ip]:[local_port]>
{extra}Content-Length: {length}

{body}]]></send>
"""
_SDP = """v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""
# A CANCEL (while ringing) or a BYE (any time) jumps to its label: sipp wants optional recvs
# before a mandatory one. The INVITE's From, To, Contact URI and CSeq number are kept for
# our BYE and for a 487 after a CANCEL.
_INVITE = """  <recv request="CANCEL" optional="global" next="got_cancel"/>
  <recv request="BYE" optional="global" next="got_bye"/>
  <recv request="INVITE">
    <action>
{dialog}      <ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" check_it="true" assign_to="invite_cseq"/>
    </action>
  </recv>
"""
# only when the callee may send BYE (sipp refuses a variable that is set and never used)
_DIALOG = """      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local_to"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
"""
_SEND_BYE = """  <send retrans="500"><![CDATA[
BYE [$contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to]""" + _TAG + """
To: [$remote_from]
Call-ID: [call_id]
CSeq: 1 BYE
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"""


def _reply(status: str, *, tag: bool = True, cseq: str = "[last_CSeq:]", sdp: bool = False) -> str:
    body = _SDP if sdp else ""
    return _REPLY.format(status=status, tag=_TAG if tag else "", cseq=cseq, body=body,
                         extra="Content-Type: application/sdp\n" if sdp else "",
                         length="[len]" if sdp else "0")


def _goto(label: str) -> str:
    return f'  <nop next="{label}"/>\n'


def build_callee_scenario(
    *, answer: str, answer_after_ms: int, audio_file: Path | None, audio_ms: int, dtmf: str,
    hold_ms: int, hangup: str, ring_ms: int,
) -> str:  # fmt: skip
    """The UAS scenario XML (see the module docstring for what each option does)."""
    if answer not in ANSWER_MODES:
        raise ValueError(f"answer must be one of {ANSWER_MODES}, not {answer!r}")
    if hangup not in CALLEE_HANGUPS:
        raise ValueError(f"hangup must be one of {CALLEE_HANGUPS}, not {hangup!r}")
    xml = _INVITE.format(dialog=_DIALOG if answer == "answer" else "") + _log(LOG_INVITE) + _reply("100 Trying", tag=False)
    if answer == "busy":
        xml += _reply("486 Busy Here") + '  <recv request="ACK"/>\n' + _log(LOG_BUSY) + _goto("end")
    elif answer == "no_answer":
        xml += _reply("180 Ringing") + _pause(ring_ms) + _log(LOG_RING_TIMEOUT)
        xml += _reply("480 Temporarily Unavailable") + '  <recv request="ACK"/>\n' + _goto("end")
    else:
        xml += _reply("180 Ringing") + _pause(answer_after_ms)
        xml += _reply("200 OK", sdp=True) + '  <recv request="ACK"/>\n' + _log(LOG_ANSWERED)
        keys = [(audio_ms + DTMF_GAP_MS + i * (DTMF_PCAP_MS + DTMF_GAP_MS), d) for i, d in enumerate(dtmf)]
        timeline, now = _media_timeline(audio_file, keys, 0)
        xml += timeline
        end_of_media = max(audio_ms + (len(keys) * DTMF_PCAP_MS if audio_file else 0), now)
        xml += _pause(end_of_media - now + hold_ms)
        if hangup == "caller":
            xml += _log(LOG_NO_BYE)
        xml += _SEND_BYE + _log(LOG_BYE_SENT) + _goto("end")
    # Reached through the optional="global" recvs: a CANCEL while ringing, a BYE at any time.
    xml += '  <label id="got_cancel"/>\n' + _reply("200 OK") + _log(LOG_CANCELLED)
    xml += _reply("487 Request Terminated", cseq="CSeq: [$invite_cseq] INVITE")
    xml += '  <recv request="ACK"/>\n' + _goto("end")
    xml += '  <label id="got_bye"/>\n' + _reply("200 OK", tag=False) + _log(LOG_BYE_RECEIVED)
    xml += '  <label id="end"/>\n'
    head = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="aribot-callee">\n'
    return f"{head}{xml}</scenario>\n"


@dataclass
class CalleeResult:
    """How the callee's call went. ``ok``: sipp succeeded and the call went as ``answer`` asked."""

    returncode: int
    ok: bool
    error: str  # "" when ok, else one line
    invited: bool  # an INVITE arrived
    answered: bool  # 200 OK sent and ACKed
    busy: bool  # 486 sent and ACKed
    cancelled: bool  # the caller CANCELled while it rang
    hangup_by: str | None  # "callee" (we sent BYE), "caller" (BYE received) or None
    media_port: int
    sip_port: int
    started: float
    ended: float
    stdout_tail: str
    stderr_tail: str
    workdir: Path

    @property
    def bye_received(self) -> bool:
        return self.hangup_by == "caller"

    @property
    def bye_sent(self) -> bool:
        return self.hangup_by == "callee"


@dataclass
class SippCallee:
    """One sipp UAS that takes one call on 127.0.0.1:``sip_port`` (see the module docstring)."""

    workdir: Path
    answer: str = "answer"
    answer_after_ms: int = 0
    audio: bytes = b""
    dtmf: str = ""
    hold_ms: int = 5000
    hangup: str = "either"
    ring_ms: int = 30000
    invite_wait_s: float = 30.0  # how long sipp waits for the INVITE
    user: str = "callee"
    sip_port: int = field(default_factory=free_udp_port)
    media_port: int = field(default_factory=lambda: free_udp_port_range(4)[0])
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _started: float = field(default=0.0, init=False, repr=False)

    @property
    def dial_string(self) -> str:
        """What Asterisk dials to reach this callee (the lab's ``sipp`` endpoint, this URI)."""
        return f"PJSIP/sipp/sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def audio_ms(self) -> int:
        return len(self.audio) * 1000 // RATE

    @property
    def deadline_s(self) -> float:
        """How long sipp may run in the worst case."""
        if self.answer == "answer":
            call = self.answer_after_ms + self.audio_ms + len(self.dtmf) * (DTMF_PCAP_MS + DTMF_GAP_MS) + self.hold_ms
        elif self.answer == "no_answer":
            call = self.ring_ms
        else:
            call = 0
        return self.invite_wait_s + call / 1000 + 10.0

    def prepare(self) -> Path:
        """Write the audio and the scenario; return the scenario path."""
        if len(self.audio) % FRAME_BYTES:
            raise ValueError(f"audio must be whole 20 ms frames ({FRAME_BYTES} B); got {len(self.audio)} B")
        if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", self.user):
            raise ValueError(f"user {self.user!r}: letters, digits and _.+- only")
        self.workdir.mkdir(parents=True, exist_ok=True)
        audio_file = None
        if self.audio:
            audio_file = self.workdir / "callee.ulaw"
            audio_file.write_bytes(self.audio)
        scenario = self.workdir / "uas.xml"
        scenario.write_text(build_callee_scenario(
            answer=self.answer, answer_after_ms=self.answer_after_ms, audio_file=audio_file,
            audio_ms=self.audio_ms, dtmf=self.dtmf, hold_ms=self.hold_ms, hangup=self.hangup, ring_ms=self.ring_ms,
        ))  # fmt: skip
        for name in ("logs.log", "errors.log", "messages.log"):
            (self.workdir / name).unlink(missing_ok=True)
        return scenario

    def command(self, scenario: Path) -> list[str]:
        w = self.workdir
        return [
            SIPP, "-sf", str(scenario), "-s", self.user, "-i", "127.0.0.1", "-p", str(self.sip_port),
            "-mi", "127.0.0.1", "-mp", str(self.media_port), "-m", "1", "-nostdin",
            "-timeout", f"{int(self.deadline_s)}s", "-timeout_error",
            "-trace_err", "-error_file", str(w / "errors.log"),
            "-trace_logs", "-log_file", str(w / "logs.log"),
            "-trace_msg", "-message_file", str(w / "messages.log"),
        ]  # fmt: skip

    async def start(self) -> None:
        """Launch sipp and return once it listens on ``sip_port`` (within 5 s)."""
        if self._proc is not None:
            raise RuntimeError("this SippCallee was started already (one call per SippCallee)")
        cmd = self.command(self.prepare())
        self._started = time.time()
        self._proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.workdir, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 5.0
        while _bindable(self.sip_port, socket.SOCK_DGRAM):   # until sipp has bound it
            if self._proc.returncode is not None or time.monotonic() > deadline:
                out, err = await self._proc.communicate() if self._proc.returncode is not None else (b"", b"")
                await self.stop()
                raise RuntimeError(f"sipp callee did not start listening on {self.sip_port}: "
                                   f"{_last_event(err.decode(errors='replace')) or err.decode(errors='replace')[-300:]}")
            await asyncio.sleep(0.02)

    async def wait(self) -> CalleeResult:
        """Wait for sipp to finish (killing it if it overruns) and return the result."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("start() the SippCallee first")
        killed = False
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.deadline_s + 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            killed = True
            _killpg(proc.pid)
            out, err = await proc.communicate()
            if isinstance(exc, asyncio.CancelledError):
                raise
        return self._result(proc.returncode or 0, killed, out, err)

    async def run(self) -> CalleeResult:
        """``start()`` then ``wait()``."""
        await self.start()
        return await self.wait()

    async def stop(self) -> None:
        """Kill sipp if it still runs (idempotent)."""
        if self._proc is not None and self._proc.returncode is None:
            _killpg(self._proc.pid)
            await self._proc.communicate()

    def _result(self, rc: int, killed: bool, out: bytes, err: bytes) -> CalleeResult:
        logs = _read(self.workdir / "logs.log")
        invited, answered = LOG_INVITE in logs, LOG_ANSWERED in logs
        busy, cancelled = LOG_BUSY in logs, LOG_CANCELLED in logs
        hangup_by = "caller" if LOG_BYE_RECEIVED in logs else "callee" if LOG_BYE_SENT in logs else None
        error = ""
        if not invited:
            error = f"no INVITE within {self.invite_wait_s:.0f} s (sipp {'killed' if killed else f'exit {rc}'})"
        elif killed:
            error = f"sipp overran {self.deadline_s + 5.0:.0f} s and was killed"
        elif self.answer == "no_answer" and LOG_RING_TIMEOUT in logs:
            error = f"no CANCEL within {self.ring_ms} ms of ringing"
        elif cancelled and self.answer != "no_answer":
            error = "the caller cancelled before the callee answered"
        elif self.answer == "answer" and self.hangup == "caller" and LOG_NO_BYE in logs:
            error = f"no BYE from the caller within {self.hold_ms} ms after the media"
        elif self.answer == "answer" and self.hangup == "callee" and hangup_by == "caller":
            error = "the caller hung up (BYE) before the callee did"
        elif rc != 0:
            detail = _last_event(_read(self.workdir / "errors.log")) or _last_event(err.decode(errors="replace"))
            error = f"sipp exited with {rc}: {detail or 'see ' + str(self.workdir)}"
        if not error and answered and f"m=audio {self.media_port} " not in _read(self.workdir / "messages.log"):
            # sipp moves on when its -mp port is taken; a sniffer on media_port would hear a stranger
            error = f"sipp did not answer with media port {self.media_port} (port taken?)"
        return CalleeResult(
            returncode=rc, ok=not error, error=error, invited=invited, answered=answered, busy=busy,
            cancelled=cancelled, hangup_by=hangup_by, media_port=self.media_port, sip_port=self.sip_port,
            started=self._started, ended=time.time(), stdout_tail=out.decode(errors="replace")[-_TAIL:],
            stderr_tail=err.decode(errors="replace")[-_TAIL:], workdir=self.workdir,
        )  # fmt: skip



"""Generate the lab caller's sipp 3.6.1 UAC scenario (INVITE, µ-law or A-law stream, DTMF, hang-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

HANGUP_MODES = ("caller", "server", "either")
PAYLOAD_TYPES = {"ulaw": (0, "PCMU"), "alaw": (8, "PCMA")}  # codec -> RTP payload type, SDP encoding name
DTMF_PCAP_DIR = Path("/usr/share/sip-tester")
_DTMF_NAMES = {**{str(d): str(d) for d in range(10)}, "*": "star", "#": "pound",
               "star": "star", "pound": "pound"}  # fmt: skip
DTMF_PCAP_MS = 200  # the Debian dtmf_2833_*.pcap files last about 160 ms

# Log lines (sipp <log> actions) that tell the Python side how the call ended.
LOG_BYE_SENT = "aribot-lab: bye sent"
LOG_BYE_RECEIVED = "aribot-lab: bye received"
LOG_BYE_TIMEOUT = "aribot-lab: no bye from server"

_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
CSeq: {cseq}
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70"""

# The optional="global" BYE recv matches a server BYE at any point of the call (even in a
# pause) and jumps to "got_bye"; sipp wants it inside a recv run that has a mandatory recv.
_INVITE = """  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{headers}
Subject: aribot-lab
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP {payload_type} 101
a=rtpmap:{payload_type} {encoding}/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv request="BYE" optional="global" next="got_bye"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{ack_headers}
Content-Length: 0

]]></send>
"""

_SEND_BYE = """  <send retrans="500"><![CDATA[
BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{headers}
Content-Length: 0

]]></send>
  <recv response="200"/>
"""

_REPLY_200 = """  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
"""


def dtmf_pcap(digit: str) -> Path:
    """The Debian sip-tester RFC 4733 pcap for ``digit`` (0-9, *, #)."""
    try:
        return DTMF_PCAP_DIR / f"dtmf_2833_{_DTMF_NAMES[digit]}.pcap"
    except KeyError:
        raise ValueError(f"unsupported DTMF digit {digit!r}: use 0-9, * or #") from None


def _headers(cseq: str) -> str:
    return _HEADERS.format(to_tag="[peer_tag_param]", cseq=cseq)


def _log(message: str) -> str:
    return f'  <nop><action><log message={quoteattr(message)}/></action></nop>\n'


def _pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n' if ms > 0 else ""


def _media_timeline(audio_file: Path | None, dtmf: Sequence[tuple[int, str]], payload_type: int) -> tuple[str, int]:
    """Start the stream, then send each DTMF at its offset (the stream paused meanwhile); returns
    (xml, elapsed ms). The voice ends ``len(dtmf) * DTMF_PCAP_MS`` later than it would without."""
    xml = ""
    if audio_file is not None:
        stream = quoteattr(f"{audio_file},1,{payload_type}")
        xml = f"  <nop><action><exec rtp_stream={stream}/></action></nop>\n"
    now = 0
    for offset, digit in sorted(dtmf):
        xml += _pause(offset - now)
        now = max(now, offset)
        pcap = quoteattr(str(dtmf_pcap(digit)))
        # The voice stream pauses while a key plays, as a phone sends events instead of audio:
        # the pcap has its own SSRC, and a voice packet between its three end packets makes
        # Asterisk 22 report the key again (tests/lab/dtmf_pcaps.py, test_dtmf.py).
        pause, resume = ('  <nop><action><exec rtp_stream="pause"/></action></nop>\n',
                         '  <nop><action><exec rtp_stream="resume"/></action></nop>\n') if audio_file else ("", "")
        xml += pause + f"  <nop><action><exec play_pcap_audio={pcap}/></action></nop>\n"
        xml += _pause(DTMF_PCAP_MS) + resume
        now += DTMF_PCAP_MS
    return xml, now


def build_scenario(
    audio_file: Path | None, audio_ms: int, *, hangup: str, hold_ms_after_audio: int,
    wait_bye_timeout_ms: int, dtmf: Sequence[tuple[int, str]] = (), audio_delay_ms: int = 0,
    codec: str = "ulaw",
) -> str:  # fmt: skip
    """The scenario XML. ``hangup``: "caller" sends BYE after audio + hold; "server" waits for
    the server's BYE until ``wait_bye_timeout_ms`` after audio + hold (then logs the timeout and
    sends BYE itself so nothing is left behind); "either" waits likewise, then sends BYE.
    A BYE from the server is answered whenever it comes (also during a DTMF pause) and logged.
    ``audio_file`` None: no RTP stream (sipp cannot stream an empty file). ``audio_delay_ms``:
    a pause after the ACK before the audio (and the DTMF timeline) starts. ``codec``: the only
    one offered and streamed, "ulaw" (PCMU, PT 0) or "alaw" (PCMA, PT 8)."""
    if hangup not in HANGUP_MODES:
        raise ValueError(f"hangup must be one of {HANGUP_MODES}, not {hangup!r}")
    payload_type, encoding = PAYLOAD_TYPES[codec]
    xml = _INVITE.format(headers=_headers("1 INVITE"), ack_headers=_headers("1 ACK"),
                         payload_type=payload_type, encoding=encoding)
    timeline, now = _media_timeline(audio_file, dtmf, payload_type)
    if audio_delay_ms > 0:
        xml += _pause(audio_delay_ms)
    xml += timeline
    paused_ms = len(dtmf) * DTMF_PCAP_MS if audio_file is not None else 0
    end_of_media = max(audio_ms + paused_ms + hold_ms_after_audio, now)
    send_bye = _SEND_BYE.format(headers=_headers("2 BYE")) + _log(LOG_BYE_SENT)
    if hangup == "caller":
        xml += _pause(end_of_media - now) + send_bye + '  <nop next="end"/>\n'
    else:
        timeout = end_of_media - now + wait_bye_timeout_ms
        xml += f'  <recv request="BYE" timeout="{timeout}" ontimeout="no_bye"/>\n'
        xml += '  <nop next="got_bye"/>\n  <label id="no_bye"/>\n'
        xml += (_log(LOG_BYE_TIMEOUT) if hangup == "server" else "") + send_bye
        xml += '  <nop next="end"/>\n'
    # Reached only through the optional="global" BYE recv (in _INVITE): a BYE at any time.
    xml += '  <label id="got_bye"/>\n' + _REPLY_200 + _log(LOG_BYE_RECEIVED)
    xml += '  <label id="end"/>\n'
    head = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="aribot-lab">\n'
    return f"{head}{xml}</scenario>\n"

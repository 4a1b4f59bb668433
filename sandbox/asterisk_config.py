"""The lab Asterisk's configuration files (asterisk-ari.md §5), rendered from a few parameters.

Always there: the ``sipp`` endpoint (no auth, identified by source IP 127.0.0.1, context
``from-sipp``, µ-law only) that the tests call through. With ``phone_password`` set there is also a
password-protected endpoint for a softphone (context ``from-phone``), and ``[global]`` then
identifies requests by From user before source IP, so a phone registering from 127.0.0.1 is
still challenged as the phone, not taken for sipp. With ``alaw_caller`` (the tests' lab) there is
also ``sipp-alaw``: sipp again, A-law only, identified by source IP 127.0.0.2.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# asterisk-ari.md §5.2, plus what the lab's dialplan and tests use (Echo, Playback, snoop,
# TALK_DETECT; Dial and music on hold for warm transfers), res_pjsip_authenticator_digest (the
# phone's digest auth; without a phone only to silence "No SIP authenticator") and
# res_pjsip_registrar (the phone's REGISTER).
MODULES = (
    # core
    "res_sorcery_config", "res_sorcery_memory", "res_sorcery_astdb", "res_timing_timerfd",
    "pbx_config",
    # codecs / formats
    "codec_ulaw", "codec_alaw", "codec_gsm", "codec_resample", "format_wav", "format_pcm", "format_gsm",
    "format_sln",
    # SIP / RTP
    "res_rtp_asterisk", "res_rtp_multicast", "res_pjproject", "res_pjsip", "res_pjsip_session",
    "res_pjsip_pubsub", "res_pjsip_sdp_rtp", "res_pjsip_endpoint_identifier_ip",
    "res_pjsip_endpoint_identifier_user", "res_pjsip_dtmf_info", "res_pjsip_logger", "res_pjsip_caller_id",
    "res_pjsip_nat", "res_pjsip_authenticator_digest", "res_pjsip_registrar", "chan_pjsip",
    # media channels, HTTP / websockets
    "chan_rtp", "res_http_websocket", "res_websocket_client",
    # bridges
    "bridge_simple", "bridge_softmix", "bridge_native_rtp", "bridge_holding",
    # Stasis / ARI
    "res_stasis", "res_stasis_answer", "res_stasis_playback", "res_stasis_recording",
    "res_stasis_snoop", "res_stasis_device_state", "res_ari", "res_ari_model",
    "res_ari_channels", "res_ari_bridges", "res_ari_events", "res_ari_applications",
    "res_ari_asterisk", "res_ari_playbacks", "res_ari_recordings", "res_ari_sounds",
    "res_ari_endpoints", "res_ari_device_states", "app_stasis",
    # dialplan applications and functions (func_strings: FILTER, which keeps ${EXTEN} to a number)
    "app_echo", "app_playback", "func_talkdetect", "func_jitterbuffer", "func_strings",
    "app_dial", "res_musiconhold",
    # Asterisk's answering-machine detection, measured beside aribot's own ([aribot-amd], amd.conf)
    "app_amd",
)  # fmt: skip

# Music on hold: the chroot ships no MOH files (Debian's asterisk-moh-opsound is not installed), so
# the lab writes its own tune (moh_audio) into <var_dir>/moh, the "default" class's directory.
MOH_DIR = "moh"
MOH_FILE = "aribot-lab-hold.ulaw"

# The source address a sipp call comes from to be the A-law-only endpoint (loopback: 127.0.0.0/8).
SIPP_ALAW_ADDRESS = "127.0.0.2"

# Configs whose absence only makes Asterisk log errors at start-up.
EMPTY_CONFIGS = (
    "acl.conf", "ccss.conf", "cdr.conf", "cel.conf", "features.conf", "pjproject.conf",
    "udptl.conf", "websocket_client.conf",
)  # fmt: skip


def check_phone_account(username: str, password: str | None) -> None:
    """Raise ValueError unless ``username``/``password`` can be written into pjsip.conf as is."""
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", username) or username in (
        "sipp", "sipp-identify", "transport-udp", "global",
    ):
        raise ValueError(
            f"phone username {username!r}: use letters, digits and _.+- "
            "(and not the name of another pjsip.conf section)"
        )
    if password is not None and not re.fullmatch(r"[!-:<-~]+", password):
        raise ValueError("phone password: use printable ASCII without spaces or ';'")


@dataclass(frozen=True)
class LabConfig:
    """Everything that varies between lab instances. Paths are as seen inside the chroot."""

    etc_dir: str
    var_dir: str
    mod_dir: str
    app: str
    http_port: int
    sip_port: int
    rtp_start: int
    rtp_end: int
    ari_username: str
    ari_password: str
    phone_password: str | None = None  # None: no phone endpoint (the tests' configuration)
    phone_username: str = "phone"
    sip_bind: str = "127.0.0.1"  # the SIP transport's address; 0.0.0.0 lets other machines in
    extra_dialplan: str = ""  # appended verbatim to extensions.conf (more contexts)
    alaw_caller: bool = False  # the A-law-only sipp endpoint (the tests' lab, not the documented samples)

    def __post_init__(self) -> None:
        check_phone_account(self.phone_username, self.phone_password)

    @property
    def phone_auth_name(self) -> str:
        """The pjsip.conf section name of the phone's auth object."""
        return f"{self.phone_username}-auth"

    def files(self) -> dict[str, str]:
        """File name -> content for every file in ``etc_dir``."""
        rendered = {
            "asterisk.conf": self.asterisk_conf(),
            "modules.conf": self.modules_conf(),
            "logger.conf": LOGGER_CONF,
            "manager.conf": "[general]\nenabled = no\n",
            "indications.conf": INDICATIONS_CONF,
            "http.conf": self.http_conf(),
            "ari.conf": self.ari_conf(),
            "pjsip.conf": self.pjsip_conf(),
            "rtp.conf": self.rtp_conf(),
            "extensions.conf": self.extensions_conf(),
            "musiconhold.conf": self.musiconhold_conf(),
            "amd.conf": AMD_CONF,
        }
        return {name: "" for name in EMPTY_CONFIGS} | rendered

    def asterisk_conf(self) -> str:
        v = self.var_dir
        return f"""[directories]
astetcdir => {self.etc_dir}
astmoddir => {self.mod_dir}
astvarlibdir => {v}/lib
astdbdir => {v}/lib
astkeydir => {v}/lib
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {v}/spool
astrundir => {v}/run
astlogdir => {v}/log
astcachedir => {v}/cache
astsbindir => /usr/sbin

[options]
verbose = 3
nocolor = yes
"""

    def modules_conf(self) -> str:
        loads = "\n".join(f"load => {name}.so" for name in MODULES)
        return f"[modules]\nautoload = no\n{loads}\n"

    def http_conf(self) -> str:
        return f"[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = {self.http_port}\n"

    def ari_conf(self) -> str:
        return f"""[general]
enabled = yes
pretty = no

[{self.ari_username}]
type = user
password = {self.ari_password}
password_format = plain
read_only = no
"""

    def pjsip_conf(self) -> str:
        phone = self.phone_password is not None
        # With a phone, ask the From user first (ip first would take a phone on 127.0.0.1 for
        # sipp) and let sipp be found only by its source IP, so that nobody can reach the
        # unauthenticated sipp endpoint from elsewhere by calling themselves "sipp".
        order = "endpoint_identifier_order = username,ip\n" if phone else ""
        sipp_by_ip = "identify_by = ip\n" if phone else ""
        return f"""[global]
type = global
user_agent = aribot-lab
{order}
[transport-udp]
type = transport
protocol = udp
bind = {self.sip_bind}:{self.sip_port}
""" + self.sipp_pjsip_conf("sipp", "ulaw", "127.0.0.1", sipp_by_ip) + (
            self.phone_pjsip_conf() if phone else "") + (
            self.sipp_pjsip_conf("sipp-alaw", "alaw", SIPP_ALAW_ADDRESS, sipp_by_ip) if self.alaw_caller else "")

    def sipp_pjsip_conf(self, name: str, codec: str, address: str, extra: str = "") -> str:
        """An unauthenticated endpoint ``name`` for sipp (context from-sipp) that allows only
        ``codec`` and is identified by the source ``address``; ``extra`` lines end the endpoint."""
        return f"""
[{name}]
type = endpoint
transport = transport-udp
context = from-sipp
disallow = all
allow = {codec}
direct_media = no
dtmf_mode = rfc4733
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes
{extra}
[{name}-identify]
type = identify
endpoint = {name}
match = {address}
"""

    def phone_pjsip_conf(self) -> str:
        """The softphone's endpoint, digest auth and AOR (one contact; a new REGISTER wins)."""
        user = self.phone_username
        return f"""
[{user}]
type = endpoint
transport = transport-udp
context = from-phone
disallow = all
allow = ulaw,alaw
direct_media = no
dtmf_mode = rfc4733
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes
identify_by = username
auth = {self.phone_auth_name}
aors = {user}

[{self.phone_auth_name}]
type = auth
auth_type = userpass
username = {user}
password = {self.phone_password}

[{user}]
type = aor
max_contacts = 1
remove_existing = yes
"""

    @property
    def moh_dir(self) -> str:
        """The music on hold files' folder (as Asterisk sees it); ``moh_audio()`` goes there."""
        return f"{self.var_dir}/{MOH_DIR}"

    def musiconhold_conf(self) -> str:
        return f"[default]\nmode = files\ndirectory = {self.moh_dir}\n"

    def rtp_conf(self) -> str:
        return f"""[general]
rtpstart = {self.rtp_start}
rtpend = {self.rtp_end}
strictrtp = yes
probation = 4
icesupport = no
"""

    def extensions_conf(self) -> str:
        return f"""[general]
static = yes
writeprotect = yes

[from-sipp]
exten => echo,1,Answer()
 same => n,Echo()
 same => n,Hangup()
; the dialled number only: a SIP user part may hold "," and "=", which would add Stasis arguments
exten => _X.,1,NoOp(aribot-lab inbound ${{EXTEN}})
 same => n,Stasis({self.app},${{FILTER(0-9*#+,${{EXTEN}})}})
 same => n(after),NoOp(aribot-lab after-stasis ${{EXTEN}} STASISSTATUS=${{STASISSTATUS}} DTMF_RESULT=${{DTMF_RESULT}} ARIBOT_END_REASON=${{ARIBOT_END_REASON}})
 same => n,Hangup()
; per-call choices: a channel variable and Stasis key=value arguments (8XX)
exten => _8XX,1,NoOp(aribot-lab choices ${{EXTEN}})
 same => n,Set(ARIBOT_VOICE=cedar)
 same => n,Set(ARIBOT_INSTRUCTIONS=from a channel variable)
 same => n,Stasis({self.app},${{EXTEN}},instructions=from the Stasis arguments,tools=none,mode=immediate,colour=blue)
 same => n,NoOp(aribot-lab after-stasis ${{EXTEN}} STASISSTATUS=${{STASISSTATUS}})
 same => n,Hangup()
; per-call speech backend: 701 by Stasis argument, 702 by channel variable, 703 asks for one
exten => 701,1,Stasis({self.app},${{EXTEN}},backend=gpt_live)
 same => n,Hangup()
exten => 702,1,Set(ARIBOT_BACKEND=gpt_live)
 same => n,Stasis({self.app},${{EXTEN}})
 same => n,Hangup()
exten => 703,1,Stasis({self.app},${{EXTEN}},backend=local)
 same => n,Hangup()

; Asterisk's AMD() on an answered channel originated here (the tests compare it with aribot's detector)
[aribot-amd]
exten => s,1,AMD()
 same => n,NoOp(aribot-lab amd ${{AMD_LABEL}} AMDSTATUS=${{AMDSTATUS}} AMDCAUSE=${{AMDCAUSE}})
 same => n,Hangup()

[aribot-continue]
exten => _X.,1,NoOp(aribot-lab continued ${{EXTEN}})
 same => n,Hangup()
""" + (self.phone_extensions() if self.phone_password is not None else "") + self.extra_dialplan

    def phone_extensions(self) -> str:
        """``[from-phone]``: echo -> Echo(); any number (or none: ``s``) -> the Stasis app."""
        return f"""
[from-phone]
exten => echo,1,Answer()
 same => n,Echo()
 same => n,Hangup()
exten => _X.,1,NoOp(aribot-lab phone ${{EXTEN}})
 same => n,Stasis({self.app},${{FILTER(0-9*#+,${{EXTEN}})}})
 same => n,Hangup()
exten => s,1,NoOp(aribot-lab phone s)
 same => n,Stasis({self.app},${{EXTEN}})
 same => n,Hangup()
"""


# app_amd's settings: Asterisk's documented defaults, written out (app_amd wants the file)
AMD_CONF = """[general]
total_analysis_time = 5000
silence_threshold = 256
initial_silence = 2500
after_greeting_silence = 800
greeting = 1500
min_word_length = 100
maximum_word_length = 5000
between_words_silence = 50
maximum_number_of_words = 2
"""

LOGGER_CONF = """[general]
dateformat = %F %T.%3q

[logfiles]
messages.log => notice,warning,error,verbose
"""

# Only the US zone, so that named tones (``tone:ring`` ...) work without Debian's big file.
INDICATIONS_CONF = """[general]
country = us

[us]
description = United States / North America
ringcadence = 2000,4000
dial = 350+440
busy = 480+620/500,0/500
ring = 440+480/2000,0/4000
congestion = 480+620/250,0/250
callwaiting = 440/300,0/10000
dialrecall = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440
record = 1400/500,0/15000
info = !950/330,!1400/330,!1800/330,0
stutter = !350+440/100,!0/100,!350+440/100,!0/100,!350+440/100,!0/100,350+440
"""


def moh_audio(seconds: float = 8.0) -> bytes:
    """The lab's hold music, raw µ-law 8 kHz: a gentle arpeggio (C E G E, 250 ms a note, soft
    attack and release), never silent for more than a few milliseconds, so a test can tell it
    from silence."""
    from aribot.core.g711 import encode  # pure; imported here so the module stays import-light

    rate, note_s = 8000, 0.25
    notes = (261.63, 329.63, 392.0, 329.63)
    per_note = int(rate * note_s)
    ramp = rate // 100  # 10 ms
    samples: list[int] = []
    for n in range(int(seconds / note_s)):
        freq = notes[n % len(notes)]
        for i in range(per_note):
            envelope = min(1.0, (i + 1) / ramp, (per_note - i) / ramp)
            samples.append(int(6000 * envelope * math.sin(2 * math.pi * freq * i / rate)))
    return encode(samples, "ulaw")

"""The lab Asterisk's rendered configuration (sandbox/asterisk_config.py): the tests' sipp-only
configuration stays as it was, plus an A-law-only sipp endpoint; ``phone_password`` adds a
softphone endpoint and its context instead."""

from __future__ import annotations

import pytest

from aribot.sandbox.asterisk_config import MODULES, SIPP_ALAW_ADDRESS, LabConfig

BASE = dict(
    etc_dir="/etc/aribot-lab/1-x", var_dir="/var/tmp/aribot-lab/1-x", mod_dir="/usr/lib/mods",
    app="app1", http_port=8088, sip_port=5999, rtp_start=30000, rtp_end=30399,
    ari_username="u", ari_password="p",
)  # fmt: skip

# pjsip.conf as rendered before the phone endpoint existed: the tests' sipp depends on it.
SIPP_ONLY_PJSIP = """[global]
type = global
user_agent = aribot-lab

[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:5999

[sipp]
type = endpoint
transport = transport-udp
context = from-sipp
disallow = all
allow = ulaw
direct_media = no
dtmf_mode = rfc4733
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes

[sipp-identify]
type = identify
endpoint = sipp
match = 127.0.0.1
"""

# The tests' A-law caller: the same endpoint allowing only alaw, found by another source address.
SIPP_ALAW_PJSIP = """
[sipp-alaw]
type = endpoint
transport = transport-udp
context = from-sipp
disallow = all
allow = alaw
direct_media = no
dtmf_mode = rfc4733
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes

[sipp-alaw-identify]
type = identify
endpoint = sipp-alaw
match = 127.0.0.2
"""


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """``[(name, {key: value})]`` in file order (names may repeat, as pjsip.conf allows)."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if line.startswith("["):
            found.append((line.strip("[]"), {}))
        elif " = " in line and found:
            key, value = line.split(" = ", 1)
            found[-1][1][key] = value
    return found


def test_without_a_phone_pjsip_and_dialplan_are_unchanged() -> None:
    cfg = LabConfig(**BASE)
    assert cfg.pjsip_conf() == SIPP_ONLY_PJSIP                       # as documented in docs/asterisk.md
    assert LabConfig(**BASE, alaw_caller=True).pjsip_conf() == SIPP_ONLY_PJSIP + SIPP_ALAW_PJSIP   # the tests' lab
    assert SIPP_ALAW_ADDRESS == "127.0.0.2"
    ext = cfg.extensions_conf()
    assert "[from-sipp]" in ext and "[from-phone]" not in ext
    assert ext.endswith("[aribot-continue]\nexten => _X.,1,NoOp(aribot-lab continued ${EXTEN})\n same => n,Hangup()\n")


def test_a_phone_password_adds_endpoint_auth_aor_and_context() -> None:
    cfg = LabConfig(**BASE, phone_password="secret123", sip_bind="0.0.0.0")
    pj = dict((f"{name}/{keys.get('type')}", keys) for name, keys in sections(cfg.pjsip_conf()))
    assert pj["global/global"]["endpoint_identifier_order"] == "username,ip"
    assert pj["transport-udp/transport"]["bind"] == "0.0.0.0:5999"
    assert pj["sipp/endpoint"]["identify_by"] == "ip"  # not reachable as "sipp" from elsewhere
    assert pj["sipp-identify/identify"]["match"] == "127.0.0.1"
    assert not any(name.startswith("sipp-alaw") for name in pj)  # the A-law caller is only the tests' lab
    phone = pj["phone/endpoint"]
    assert phone["context"] == "from-phone" and phone["transport"] == "transport-udp"
    assert (phone["disallow"], phone["allow"]) == ("all", "ulaw,alaw")
    assert (phone["direct_media"], phone["dtmf_mode"]) == ("no", "rfc4733")
    assert phone["rtp_symmetric"] == phone["force_rport"] == phone["rewrite_contact"] == "yes"
    assert phone["auth"] == "phone-auth" and phone["aors"] == "phone"
    assert pj["phone-auth/auth"] == {"type": "auth", "auth_type": "userpass", "username": "phone",
                                     "password": "secret123"}
    assert pj["phone/aor"] == {"type": "aor", "max_contacts": "1", "remove_existing": "yes"}
    ext = cfg.extensions_conf()
    context = ext[ext.index("[from-phone]"):]
    assert "exten => echo,1,Answer()\n same => n,Echo()\n same => n,Hangup()" in context
    for exten, stasis in (("_X.", "Stasis(app1,${FILTER(0-9*#+,${EXTEN})})"), ("s", "Stasis(app1,${EXTEN})")):
        block = context[context.index(f"exten => {exten},1"):]
        assert block.index(stasis) < block.index("Hangup()")   # a dialled number, never "1,key=value"
    assert "[from-sipp]" in ext  # the tests' context stays
    assert "load => res_pjsip_registrar.so" in cfg.modules_conf() and "res_pjsip_registrar" in MODULES
    assert "load => func_strings.so" in cfg.modules_conf()   # FILTER() in the dialplan; unloaded it expands to ""


def test_other_phone_username_and_extra_dialplan() -> None:
    cfg = LabConfig(**BASE, phone_password="pw", phone_username="alice",
                    extra_dialplan="[hello]\nexten => s,1,Playback(/var/tmp/x/hello)\n")
    names = [(name, keys.get("type")) for name, keys in sections(cfg.pjsip_conf())]
    assert ("alice", "endpoint") in names and ("alice-auth", "auth") in names and ("alice", "aor") in names
    assert cfg.extensions_conf().endswith("[hello]\nexten => s,1,Playback(/var/tmp/x/hello)\n")
    assert LabConfig(**BASE, extra_dialplan="[x]\n").extensions_conf().endswith("same => n,Hangup()\n[x]\n")


@pytest.mark.parametrize("field", [dict(phone_username="sipp", phone_password="pw"),
                                   dict(phone_username="a b", phone_password="pw"),
                                   dict(phone_password="has;semicolon"),
                                   dict(phone_password="has space"),
                                   dict(phone_password="")])
def test_unsafe_phone_accounts_are_refused(field: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        LabConfig(**BASE, **field)


def test_asterisks_amd_is_loaded_configured_and_reachable() -> None:
    """app_amd with amd.conf (Asterisk's defaults, written out) and the [aribot-amd] context the outbound
    tests originate to, to measure AMD() beside aribot's own detector."""
    cfg = LabConfig(**BASE)
    assert "load => app_amd.so" in cfg.modules_conf()
    amd = cfg.files()["amd.conf"]
    assert amd.startswith("[general]\n") and "greeting = 1500\n" in amd and "after_greeting_silence = 800\n" in amd
    ext = cfg.extensions_conf()
    context = ext[ext.index("[aribot-amd]"):ext.index("[aribot-continue]")]
    assert "exten => s,1,AMD()" in context and "AMDSTATUS=${AMDSTATUS}" in context and "Stasis" not in context

"""``aribot lab`` end to end: the real command as a subprocess, its printed ARI credentials, a
sipp softphone that registers (and calls) with digest auth, and a clean stop on SIGINT.

Needs root and the chroot built by scripts/setup; without them these tests FAIL (never skip).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from aribot.sandbox.ports import free_udp_port, free_udp_port_range
from tests.lab.fixtures import require_lab_chroot
from tests.lab.serve import ARIBOT

SIPP = "/usr/bin/sipp"
PASSWORD = "secret123"
APP = "labtest"

_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:{to}@[remote_ip]:[remote_port]>{to_tag}
Call-ID: [call_id]
CSeq: {cseq}
Contact: <sip:{user}@[local_ip]:[local_port]>
Max-Forwards: 70"""


def register_scenario(user: str, password: str) -> str:
    """REGISTER, answer the 401 challenge with ``password``, expect 200 OK."""
    def register(cseq: int, auth: str) -> str:
        head = _HEADERS.format(user=user, to=user, to_tag="", cseq=f"{cseq} REGISTER")
        return f"""  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
{head}
Expires: 60
{auth}Content-Length: 0

]]></send>
"""
    auth = f"[authentication username={user} password={password}]\n"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
{register(1, "")}  <recv response="401" auth="true"/>
{register(2, auth)}  <recv response="200"/>
</scenario>
"""


def invite_scenario(user: str, password: str) -> str:
    """INVITE [service] with digest auth, wait for the server's BYE (no media is sent)."""
    sdp = """v=0
o=phone 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
"""

    def headers(cseq: str, to_tag: str = "[peer_tag_param]") -> str:
        return _HEADERS.format(user=user, to="[service]", to_tag=to_tag, cseq=cseq)

    def invite(cseq: int, auth: str) -> str:
        return f"""  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{headers(f"{cseq} INVITE", "")}
{auth}Content-Type: application/sdp
Content-Length: [len]

{sdp}]]></send>
"""
    auth = f"[authentication username={user} password={password}]\n"
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="invite">
{invite(1, "")}  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{invite(2, auth)}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{headers("2 ACK")}
Content-Length: 0

]]></send>
  <recv request="BYE" timeout="10000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


@dataclass
class Sipp:
    returncode: int
    messages: str
    errors: str


async def run_sipp(workdir: Path, name: str, scenario: str, sip_port: int, *, service: str = "phone") -> Sipp:
    """Run ``scenario`` once against 127.0.0.1:``sip_port``; sipp's message trace is returned."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.xml").write_text(scenario)
    messages, errors = workdir / f"{name}.messages.log", workdir / f"{name}.errors.log"
    proc = await asyncio.create_subprocess_exec(
        SIPP, f"127.0.0.1:{sip_port}", "-sf", str(workdir / f"{name}.xml"), "-s", service,
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1",
        "-mp", str(free_udp_port_range(4)[0]), "-m", "1", "-l", "1", "-nostdin",
        "-timeout", "15s", "-timeout_error", "-trace_msg", "-message_file", str(messages),
        "-trace_err", "-error_file", str(errors),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
    )  # fmt: skip
    rc = await asyncio.wait_for(proc.wait(), 30)
    read = lambda p: p.read_text(errors="replace") if p.exists() else ""  # noqa: E731
    return Sipp(rc, read(messages), read(errors))


@dataclass
class Printed:
    """What ``aribot lab`` printed, parsed."""

    ari_url: str
    ari_username: str
    ari_password: str
    app: str
    sip_port: int
    phone_username: str
    phone_password: str
    config_dir: Path


async def read_banner(proc: asyncio.subprocess.Process, timeout: float = 60.0) -> tuple[Printed, str]:
    """Read stdout until the "Ctrl-C stops Asterisk." line; return the parsed values and the text."""
    text = ""
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while "Ctrl-C stops Asterisk." not in text:
            line = await proc.stdout.readline()
            if not line:
                err = (await proc.stderr.read()).decode() if proc.stderr else ""
                pytest.fail(f"aribot lab exited ({await proc.wait()}) before it was ready: {text}{err}")
            text += line.decode()
    env = re.search(r"ARIBOT_ARI__URL=(\S+) ARIBOT_ARI__USERNAME=(\S+) ARIBOT_ARI__PASSWORD=(\S+) "
                    r"ARIBOT_ARI__APP=(\S+)", text)
    sip = re.search(r"SIP server: ([\d.]+):(\d+)", text)
    user = re.search(r"username: +(\S+)", text)
    password = re.search(r"password: +(\S+)", text)
    config = re.search(r"Config: (\S+)", text)
    assert env and sip and user and password and config, text
    assert "dial any number, e.g. 100" in text and "dial echo" in text
    printed = Printed(env[1], env[2], env[3], env[4], int(sip[2]), user[1], password[1], Path(config[1]))
    return printed, text


def asterisk_pids(config_dir: Path) -> list[int]:
    """Pids of processes whose command line names this instance's config."""
    marker = f"/etc/aribot-lab/{config_dir.name}/".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def chroot() -> Path:
    return require_lab_chroot()


async def test_aribot_lab_serves_ari_and_a_password_protected_phone(chroot: Path, tmp_path: Path) -> None:
    sip_port = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        str(ARIBOT), "lab", "--sip-port", str(sip_port), "--password", PASSWORD, "--app", APP,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lab, _text = await read_banner(proc)
        assert (lab.app, lab.sip_port, lab.phone_username, lab.phone_password) == (APP, sip_port, "phone", PASSWORD)
        assert lab.config_dir.is_dir() and asterisk_pids(lab.config_dir)

        token = base64.b64encode(f"{lab.ari_username}:{lab.ari_password}".encode()).decode()
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as http:
            async with http.get(f"{lab.ari_url}/ari/asterisk/ping") as resp:
                assert resp.status == 200

            async def phone_state() -> str:
                async with http.get(f"{lab.ari_url}/ari/endpoints/PJSIP/phone") as resp:
                    assert resp.status == 200
                    return (await resp.json())["state"]

            wrong = await run_sipp(tmp_path, "wrong", register_scenario("phone", "not-the-password"), sip_port)
            assert wrong.returncode != 0 and "SIP/2.0 200 OK" not in wrong.messages, wrong.messages
            assert "SIP/2.0 401" in wrong.messages  # challenged, then refused again
            assert await phone_state() == "offline"

            ok = await run_sipp(tmp_path, "register", register_scenario("phone", PASSWORD), sip_port)
            assert ok.returncode == 0, ok.errors or ok.messages
            assert "SIP/2.0 200 OK" in ok.messages
            assert await phone_state() == "online"

            # A call from the phone reaches the Stasis app with the dialled number as argument.
            events_url = (f"{lab.ari_url.replace('http', 'ws', 1)}/ari/events?app={APP}"
                          f"&api_key={lab.ari_username}:{lab.ari_password}")
            async with http.ws_connect(events_url) as ws:
                call = asyncio.create_task(
                    run_sipp(tmp_path, "invite", invite_scenario("phone", PASSWORD), sip_port, service="100")
                )
                async with asyncio.timeout(15):
                    async for msg in ws:
                        event = json.loads(msg.data)
                        if event["type"] == "StasisStart":
                            break
                channel = event["channel"]
                assert event["args"] == ["100"] and channel["name"].startswith("PJSIP/phone-")
                assert channel["dialplan"]["context"] == "from-phone"
                async with http.post(f"{lab.ari_url}/ari/channels/{channel['id']}/answer") as resp:
                    assert resp.status == 204
                async with http.delete(f"{lab.ari_url}/ari/channels/{channel['id']}") as resp:
                    assert resp.status == 204  # sipp gets a BYE
                result = await call
                assert result.returncode == 0, result.errors or result.messages

        proc.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(proc.wait(), 20)
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
        err = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert rc == 0, out + err
        assert "stopped" in out and err == ""
        assert not lab.config_dir.exists() and asterisk_pids(lab.config_dir) == []
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_aribot_lab_refuses_a_taken_sip_port(chroot: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", free_udp_port()))
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            str(ARIBOT), "lab", "--sip-port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and f"UDP port {port}" in lines[0] and "taken" in lines[0], err

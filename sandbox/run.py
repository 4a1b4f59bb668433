"""``aribot lab``: a private Asterisk 22 with a softphone account, to try aribot by hand.

It runs one ``AsteriskLab`` from the lab chroot (built first if missing, about a minute), with
the SIP transport on a known port and a password-protected endpoint for a softphone, prints how
to point aribot and the phone at it, and runs until SIGINT/SIGTERM, then stops Asterisk and
removes the instance's files. ARI listens on 127.0.0.1 only: aribot runs on the same machine.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TextIO

from aribot.sandbox.asterisk import AsteriskLab, AsteriskLabError
from aribot.sandbox.asterisk_config import check_phone_account
from aribot.sandbox.ports import free_udp_port
from aribot.sandbox.provision import (
    EXPECTED_VERSION,
    ProvisionError,
    default_chroot,
    ensure_chroot,
    is_ready,
)  # fmt: skip

DEFAULT_SIP_PORT = 5062  # not 5060: a system Asterisk or another SIP stack may own that
PHONE_USERNAME = "phone"


class LabError(RuntimeError):
    """``aribot lab`` cannot run; the message is the one line to show."""


def _udp_free(bind: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((bind, port))
        except OSError:
            return False
    return True


def choose_sip_port(requested: int | None, bind: str, out: TextIO) -> int:
    """``requested`` if given (it must be free); else DEFAULT_SIP_PORT, or a free port if taken."""
    if requested is not None:
        if not 1 <= requested <= 65535:
            raise LabError(f"--sip-port {requested}: use a UDP port from 1 to 65535")
        if not _udp_free(bind, requested):
            raise LabError(f"UDP port {requested} on {bind} is taken: pick another --sip-port")
        return requested
    if _udp_free(bind, DEFAULT_SIP_PORT):
        return DEFAULT_SIP_PORT
    port = free_udp_port()
    print(f"aribot lab: UDP port {DEFAULT_SIP_PORT} is taken; using {port} for SIP", file=out, flush=True)
    return port


def _reachable_address(bind: str) -> str:
    """The address a phone should use: ``bind`` itself, or for 0.0.0.0 this host's main IPv4."""
    if bind not in ("0.0.0.0", ""):
        return bind
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            return sock.getsockname()[0]
        except OSError:
            return "<this machine's IP address>"


def prepare_chroot(out: TextIO) -> Path:
    """The lab chroot, built first if missing (with a one-line notice); LabError if impossible."""
    if os.geteuid() != 0:
        raise LabError("aribot lab needs root (it runs Asterisk in a chroot): run it with sudo or as root")
    path = default_chroot()
    if not is_ready(path):
        print(f"aribot lab: building the Asterisk {EXPECTED_VERSION} chroot at {path} (about a minute, once)...",
              file=out, flush=True)
    try:
        return ensure_chroot(path)
    except ProvisionError as exc:
        raise LabError(f"cannot build the Asterisk chroot: {exc}") from exc


def connection_text(lab: AsteriskLab, address: str) -> str:
    """What to tell the user once Asterisk runs: aribot's ARI settings and the phone's account."""
    return f"""aribot lab: Asterisk {EXPECTED_VERSION} is running (Stasis app "{lab.app}").

Run aribot against it (same machine; ARI listens on 127.0.0.1 only):
  ARIBOT_ARI__URL={lab.ari_url} ARIBOT_ARI__USERNAME={lab.ari_username} \
ARIBOT_ARI__PASSWORD={lab.ari_password} ARIBOT_ARI__APP={lab.app} aribot serve

Register a softphone (UDP, codec G.711 u-law or a-law):
  SIP server: {address}:{lab.sip_port}
  username:   {lab.phone_username}
  password:   {lab.phone_password}
  dial any number, e.g. 100, to reach the Stasis app; dial echo for an echo test

Config: {lab.config_dir}  log: {lab.log_path}
Ctrl-C stops Asterisk.
"""


async def run_lab(
    *, sip_port: int | None = None, bind: str = "127.0.0.1", password: str | None = None,
    app: str = "aribot", out: TextIO = sys.stdout, err: TextIO = sys.stderr,
) -> int:  # fmt: skip
    """Run the lab until SIGINT/SIGTERM; 0 after a clean stop, 1 (one line on ``err``) on an error."""
    lab: AsteriskLab | None = None
    try:
        password = password or secrets.token_urlsafe(9)
        try:  # the check LabConfig makes at start, before a minute of chroot building
            check_phone_account(PHONE_USERNAME, password)
        except ValueError as exc:
            raise LabError(f"--password: {exc}") from None
        if not app or any(c in app for c in ",;()[]\n\r\t "):
            raise LabError(f"--app {app!r}: use a name without spaces, commas, brackets or ';'")
        chroot = prepare_chroot(out)
        port = choose_sip_port(sip_port, bind, out)
        lab = AsteriskLab(chroot, app=app, sip_port=port, sip_bind=bind, phone_password=password,
                          phone_username=PHONE_USERNAME)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await lab.start()
        except AsteriskLabError as exc:
            raise LabError(f"Asterisk did not start: {exc}") from exc
        if _udp_free(bind, port):
            raise LabError(f"Asterisk is not listening on UDP {bind}:{port} (see {lab.log_path})")
        print(connection_text(lab, _reachable_address(bind)), file=out, flush=True)
        while not stop.is_set():
            if not lab.running:
                raise LabError(f"Asterisk exited unexpectedly (see {lab.log_path})")
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        print("aribot lab: stopping Asterisk", file=out, flush=True)
        await lab.stop()
        lab = None
        print("aribot lab: stopped", file=out, flush=True)
        return 0
    except LabError as exc:
        print(f"aribot lab: {exc}", file=err, flush=True)
        return 1
    finally:
        if lab is not None:
            await lab.stop()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

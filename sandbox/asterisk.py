"""One real Asterisk 22 from the lab chroot, with a private generated config and private ports.

``AsteriskLab`` is independent of any event loop (plain ``subprocess`` for the process, one
aiohttp session per ARI request), so a session-scoped pytest fixture can start it once with
``asyncio.run(lab.start())`` and every test, whatever its loop, can use it (that is what
``tests.lab.fixtures.asterisk_lab`` does)::

    lab = AsteriskLab(chroot)            # picks free HTTP/SIP ports and a 400-port RTP range
    asyncio.run(lab.start())             # ready when /ari/asterisk/ping answers (~0.25 s)
    status, body = await lab.ari("POST", f"/channels/{cid}/answer")
    asyncio.run(lab.stop())              # core stop now, kill if needed, remove its dirs

``aribot lab`` (sandbox/run.py) runs one with a fixed SIP port and a softphone endpoint
(``phone_password``). ``extra_dialplan`` adds contexts to extensions.conf; files the dialplan
should play can go into ``var_dir`` (``path_in_chroot`` gives the name Asterisk sees)::

    lab = AsteriskLab(chroot, extra_dialplan="[hello]\nexten => s,1,Playback(...)\n")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp

from aribot.sandbox.asterisk_config import MOH_DIR, MOH_FILE, LabConfig, moh_audio
from aribot.sandbox.ports import free_tcp_port, free_udp_port, free_udp_port_range

ASTERISK = "/usr/sbin/asterisk"
ETC_BASE = "/etc/aribot-lab"  # inside the chroot
VAR_BASE = "/var/tmp/aribot-lab"  # inside the chroot
RTP_PORTS = 400
# setpriv (util-linux) makes the kernel SIGKILL Asterisk when the thread that started it dies,
# so a killed test run leaves no Asterisk behind (start it from a long-lived thread).
LAUNCHER = ("setpriv", "--pdeathsig", "KILL", "chroot")


class AsteriskLabError(RuntimeError):
    """The lab Asterisk failed to start, answer or stop."""


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM then SIGKILL ``proc``'s process group until ``proc`` has exited."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _reap(proc: subprocess.Popen[bytes] | None, dirs: list[Path]) -> None:
    """Finalizer / atexit safety net: kill the process if still running, remove its dirs."""
    if proc is not None:
        _kill_group(proc, grace=1.0)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def sweep_stale(root: Path) -> None:
    """Remove instance dirs left by lab owners that died (their Asterisk died with them)."""
    for var_dir in (root / VAR_BASE.lstrip("/")).glob("*-*"):
        owner = var_dir.name.split("-", 1)[0]
        if owner.isdigit() and not _pid_alive(int(owner)):
            shutil.rmtree(var_dir, ignore_errors=True)
            shutil.rmtree(root / ETC_BASE.lstrip("/") / var_dir.name, ignore_errors=True)


def _module_dir(root: Path) -> str:
    """The chroot's Asterisk module directory (multiarch path), as seen inside the chroot."""
    found = sorted(root.glob("usr/lib/*/asterisk/modules"))
    if not found:
        raise AsteriskLabError(f"no Asterisk modules under {root}/usr/lib: run scripts/setup")
    return "/" + str(found[0].relative_to(root))


def _query(params: dict[str, Any]) -> list[tuple[str, str]]:
    """ARI query parameters: bools as true/false, lists as repeated keys, None dropped."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if v is not None:
                pairs.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return pairs


class AsteriskLab:
    """A private Asterisk instance: config in <root>/etc/aribot-lab/<id>, state in /var/tmp."""

    def __init__(
        self, chroot: Path, *, app: str = "aribot-test", sip_port: int | None = None,
        sip_bind: str = "127.0.0.1", phone_password: str | None = None,
        phone_username: str = "phone", extra_dialplan: str = "", alaw_caller: bool = False,
    ) -> None:  # fmt: skip
        """``sip_port`` None: a free port. ``sip_bind``: the SIP transport's address.
        ``phone_password``: add a softphone endpoint ``phone_username`` (context from-phone).
        ``extra_dialplan``: appended verbatim to extensions.conf (may be changed until start).
        ``alaw_caller``: add the A-law-only sipp endpoint (calls from SIPP_ALAW_ADDRESS)."""
        self.root = Path(chroot)
        self.app = app
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.ari_username = "aribot-lab"
        self.ari_password = secrets.token_urlsafe(16)
        self.sip_bind = sip_bind
        self.phone_username = phone_username
        self.phone_password = phone_password
        self.extra_dialplan = extra_dialplan
        self.alaw_caller = alaw_caller
        self._wanted_sip_port = sip_port
        self.http_port = 0
        self.sip_port = 0
        self.rtp_port_range = (0, 0)
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # --- paths and URLs ----------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        """Host path of this instance's config directory."""
        return self.root / ETC_BASE.lstrip("/") / self.id

    @property
    def var_dir(self) -> Path:
        """Host path of this instance's writable state (log, run, spool, lib)."""
        return self.root / VAR_BASE.lstrip("/") / self.id

    def path_in_chroot(self, host_path: Path | str) -> str:
        """The name Asterisk sees for ``host_path`` (a path inside the chroot), e.g. to reference
        a sound file under ``var_dir`` from the dialplan (without its extension for Playback)."""
        try:
            return "/" + str(Path(host_path).absolute().relative_to(self.root.absolute()))
        except ValueError:
            raise ValueError(f"{host_path} is not inside the chroot {self.root}") from None

    def host_path(self, chroot_path: str) -> Path:
        """The host path of ``chroot_path`` (a path as Asterisk sees it), e.g. a recording."""
        return self.root / chroot_path.lstrip("/")

    @property
    def log_path(self) -> Path:
        """Host path of messages.log."""
        return self.var_dir / "log" / "messages.log"

    @property
    def ari_url(self) -> str:
        """``http://127.0.0.1:<port>`` (ARI lives under ``/ari``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def basic_auth_header(self) -> str:
        """The ``Authorization`` header value for the ARI user."""
        token = base64.b64encode(f"{self.ari_username}:{self.ari_password}".encode()).decode()
        return f"Basic {token}"

    @property
    def _conf_in_chroot(self) -> str:
        return f"{ETC_BASE}/{self.id}/asterisk.conf"

    def events_url(self, app: str | None = None) -> str:
        """The ARI events WebSocket URL for ``app`` (default: this lab's app), with api_key."""
        return (
            f"ws://127.0.0.1:{self.http_port}/ari/events?app={app or self.app}"
            f"&api_key={self.ari_username}:{self.ari_password}"
        )

    @property
    def running(self) -> bool:
        """True while the Asterisk process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # --- lifecycle ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        self.http_port = free_tcp_port()
        self.sip_port = self._wanted_sip_port or free_udp_port()
        start, end = free_udp_port_range(RTP_PORTS, hold=True)
        while start <= self.sip_port <= end:
            start, end = free_udp_port_range(RTP_PORTS, hold=True)
        self.rtp_port_range = (start, end)
        cfg = LabConfig(
            etc_dir=f"{ETC_BASE}/{self.id}", var_dir=f"{VAR_BASE}/{self.id}",
            mod_dir=_module_dir(self.root), app=self.app, http_port=self.http_port,
            sip_port=self.sip_port, rtp_start=start, rtp_end=end,
            ari_username=self.ari_username, ari_password=self.ari_password,
            phone_password=self.phone_password, phone_username=self.phone_username,
            sip_bind=self.sip_bind, extra_dialplan=self.extra_dialplan, alaw_caller=self.alaw_caller,
        )  # fmt: skip
        self.config_dir.mkdir(parents=True)
        for name, text in cfg.files().items():
            (self.config_dir / name).write_text(text)
        for sub in ("lib", "spool", "run", "log", "cache", MOH_DIR):
            (self.var_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.var_dir / MOH_DIR / MOH_FILE).write_bytes(moh_audio())

    async def start(self, timeout: float = 10.0) -> None:
        """Launch Asterisk and wait until ``GET /ari/asterisk/ping`` answers 200."""
        if self._proc is not None:
            raise AsteriskLabError("this AsteriskLab was already started")
        if not (self.root / ASTERISK.lstrip("/")).is_file():
            raise AsteriskLabError(f"no Asterisk chroot at {self.root}: run scripts/setup")
        sweep_stale(self.root)
        self._write_config()
        self._launch()
        try:
            await self._wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    def _launch(self) -> None:
        cmd = [*LAUNCHER, str(self.root), ASTERISK, "-f", "-n", "-C", self._conf_in_chroot]
        with open(self.var_dir / "log" / "stdout.log", "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._finalizer = weakref.finalize(
            self, _reap, self._proc, [self.config_dir, self.var_dir]
        )

    async def restart(self, down_s: float = 0.0, timeout: float = 10.0, *, crash: bool = False) -> None:
        """Stop Asterisk (``core stop now``: it hangs up every channel first, as an operator's
        restart does; ``crash``: SIGKILL, nothing is told to anyone) and start it again with the
        same config and ports."""
        proc = self._proc
        if proc is None:
            raise AsteriskLabError("this AsteriskLab was not started")
        if crash and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 5.0)
        await self._halt(proc)
        if self._finalizer is not None:
            self._finalizer.detach()  # keep the dirs: the same instance starts again
        await asyncio.sleep(down_s)
        self._launch()
        await self._wait_ready(timeout)

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise AsteriskLabError(f"Asterisk exited with {code} at start-up; {self._tail()}")
            try:
                status, body = await self.ari("GET", "/asterisk/ping", _timeout=1.0)
                if status == 200:
                    return
                last = f"HTTP {status} {body}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                last = type(exc).__name__
            await asyncio.sleep(0.05)
        raise AsteriskLabError(f"ARI ping not ready after {timeout} s ({last}); {self._tail()}")

    def _tail(self, lines: int = 8) -> str:
        """The last lines of the Asterisk logs, for error messages."""
        text = self.log_text() + self._read(self.var_dir / "log" / "stdout.log")
        tail = " | ".join(text.strip().splitlines()[-lines:])
        return f"last log lines: {tail or '(empty)'}"

    async def stop(self) -> None:
        """``core stop now``, then SIGTERM/SIGKILL if needed; remove the instance's dirs."""
        if self._proc is not None:
            await self._halt(self._proc)
        if self._finalizer is not None:
            self._finalizer()  # removes the dirs (and kills, should anything be left)

    async def _halt(self, proc: subprocess.Popen[bytes]) -> None:
        """``core stop now``, then SIGTERM/SIGKILL if Asterisk is still running 5 s later."""
        if proc.poll() is not None:
            return
        try:
            await asyncio.to_thread(self.cli, "core stop now")
        except (AsteriskLabError, OSError, subprocess.SubprocessError):
            pass
        try:
            await asyncio.to_thread(proc.wait, 5.0)
        except subprocess.TimeoutExpired:
            await asyncio.to_thread(_kill_group, proc)

    # --- control -----------------------------------------------------------------------------
    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command through ``asterisk -rx`` and return its output."""
        cmd = ["chroot", str(self.root), ASTERISK, "-C", self._conf_in_chroot, "-rx", command]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskLabError(f"CLI {command!r} timed out after {timeout} s") from exc
        if out.returncode != 0:
            detail = out.stderr.strip() or out.stdout.strip()
            raise AsteriskLabError(f"CLI {command!r} failed ({out.returncode}): {detail}")
        return out.stdout

    async def ari(
        self, method: str, path: str, *, body: Any = None, auth: bool = True,
        _timeout: float = 10.0, **params: Any,
    ) -> tuple[int, Any]:  # fmt: skip
        """One ARI request (``path`` relative to /ari); returns (status, JSON or text)."""
        headers = {"Authorization": self.basic_auth_header} if auth else {}
        timeout = aiohttp.ClientTimeout(total=_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(
                method, f"{self.ari_url}/ari{path}", params=_query(params), json=body,
                headers=headers,
            ) as resp:  # fmt: skip
                text = await resp.text()
                if resp.content_type == "application/json" and text:
                    return resp.status, await resp.json()
                return resp.status, text

    async def wait_clean(self, timeout: float = 2.0) -> tuple[list[Any], list[Any]]:
        """Poll until no channels and no bridges exist; return what is left ([] and [] if clean)."""
        deadline = time.monotonic() + timeout
        while True:
            _, channels = await self.ari("GET", "/channels")
            _, bridges = await self.ari("GET", "/bridges")
            if (not channels and not bridges) or time.monotonic() >= deadline:
                return list(channels), list(bridges)
            await asyncio.sleep(0.05)

    # --- logs --------------------------------------------------------------------------------
    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self) -> str:
        """The whole messages.log so far."""
        return self._read(self.log_path)

    async def wait_for_log(
        self, pattern: str, timeout: float = 5.0, *, since: int = 0
    ) -> re.Match[str]:
        """Wait for ``pattern`` (regex) in messages.log from character offset ``since``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text(), since)
            if match:
                return match
            if time.monotonic() >= deadline:
                raise AsteriskLabError(f"{pattern!r} not in {self.log_path} after {timeout} s")
            await asyncio.sleep(0.05)

"""Set-up diagnostics, before a single AI minute is paid for: can aribot log in to ARI, is its Stasis
app registered, which Asterisk is it, can Asterisk send RTP to us, does the chosen speech backend's
service accept us (its own check, e.g. the Realtime API's key).

``run_checks`` serves both ``aribot doctor`` and the dashboard's setup checklist. Each ``Check`` says
in one line what is wrong and what to do; no secret is ever part of it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aribot.core.ari import AriClient, AriError, AriNotFound
from aribot.core.plugins import PluginError
from aribot.core.settings import SettingsError, declared, env_name, is_secret

NAMES = ("settings", "ari_login", "ari_app", "asterisk_version", "rtp_address", "backend")
TESTED_MAJOR = 22  # the Asterisk aribot's integration tests run on
EXTERNAL_MEDIA_SINCE = (16, 6)
PORT_SAMPLE = 64  # RTP ports test-bound at most (evenly spread over the range)


@dataclass
class Check:
    """One diagnostic. ``ok`` with a ``hint`` is a warning; ``skipped`` checks could not run."""

    name: str
    ok: bool
    detail: str
    hint: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        """OK, WARN (ok, with a hint), FAIL or SKIP."""
        return "SKIP" if self.skipped else "FAIL" if not self.ok else "WARN" if self.hint else "OK"

    def line(self) -> str:
        """``FAIL backend  openai_realtime: invalid API key (…): set ARIBOT_OPENAI__API_KEY …``"""
        return f"{self.status:<4} {self.name}  {self.detail}" + (f": {self.hint}" if self.hint else "")


def key(name: str) -> str:
    """``ari.password (ARIBOT_ARI__PASSWORD)``: a setting as the user can set it."""
    return f"{name} ({env_name(name)})"


async def run_checks(settings: Any, *, app: Any = None, backends: dict[str, Any] | None = None,
                     timeout: float = 5.0) -> list[Check]:
    """Every check, in NAMES order. ``settings``: loaded settings, or the SettingsError/PluginError
    that ``configure()`` raised (then only ``settings`` runs). ``app``: a running App, if any;
    ``backends``: name → BackendType (the App's, or the loaded plugins')."""
    if isinstance(settings, (SettingsError, PluginError)):
        return [check_settings(settings)] + [
            Check(name, False, "not checked: the settings are not valid", skipped=True) for name in NAMES[1:]]
    results = await asyncio.gather(check_ari(settings, app=app, timeout=timeout), check_rtp(settings, timeout=timeout),
                                   check_backend(settings, backends if backends is not None else app.backends,
                                                 timeout=timeout), return_exceptions=True)
    checks = [check_settings(None)]
    for names, result in zip((NAMES[1:4], NAMES[4:5], NAMES[5:]), results):
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result
        if isinstance(result, Exception):
            checks += [Check(name, False, f"the check crashed: {type(result).__name__}: {result}") for name in names]
        else:
            checks += result if isinstance(result, list) else [result]
    secrets = [str(settings.get(s.key)) for s in declared(settings) if is_secret(s.key) and settings.get(s.key)]
    return [scrub(check, secrets) for check in checks]


async def doctor(settings_file: str | Path | None = None, *, timeout: float = 5.0) -> list[Check]:
    """Load settings and plugins as ``aribot serve`` would, then ``run_checks``."""
    from aribot.core.app import configure  # late: core.app imports the whole server

    try:
        settings, plugins = configure(settings_file)
    except (SettingsError, PluginError) as exc:
        return await run_checks(exc, timeout=timeout)
    return await run_checks(settings, backends=plugins.backends(), timeout=timeout)


def render(checks: list[Check], *, as_json: bool = False) -> str:
    """One line per check, or a JSON list (each check's fields plus ``status``)."""
    if as_json:
        return json.dumps([asdict(c) | {"status": c.status} for c in checks], indent=2)
    return "\n".join(c.line() for c in checks)


def scrub(check: Check, secrets: list[str]) -> Check:
    """A safety net: any secret that slipped into a text becomes ***."""
    for secret in secrets:
        check.detail, check.hint = check.detail.replace(secret, "***"), check.hint.replace(secret, "***")
    return check


# --- settings ------------------------------------------------------------------------------------

def check_settings(error: Exception | None) -> Check:
    """``settings``: the error configure() raised (named keys → their env vars), or valid."""
    if error is None:
        return Check("settings", True, "all settings are valid")
    keys = list(dict.fromkeys(re.findall(r"setting ([\w.]+) =", str(error))))
    hint = ("fix " + ", ".join(key(k) for k in keys)) if keys else "fix the settings file or the plugin named"
    return Check("settings", False, str(error), hint)


# --- ARI ---------------------------------------------------------------------------------------

def shown_url(url: str) -> str:
    """The URL without any user:password@ part."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


async def check_ari(settings: Any, *, app: Any = None, timeout: float = 5.0) -> list[Check]:
    """``ari_login``, then ``ari_app`` and ``asterisk_version`` (skipped if the login failed)."""
    ari = settings.ari
    client = AriClient(ari.url, ari.username, ari.password, request_timeout=timeout)
    await client.start()
    try:
        login = await _ari_login(client, ari, timeout)
        if not login.ok:
            why = "not checked: ari_login failed"
            return [login, *(Check(name, False, why, skipped=True) for name in ("ari_app", "asterisk_version"))]
        registered, (version, text) = await asyncio.gather(_ari_app(client, ari.app, app), _asterisk_version(client))
    finally:
        await client.close()
    if text:  # "22.10.1+dfsg+~cs6.17.60671434-1" (Debian) → "22.10.1"
        login.detail = login.detail.replace("Asterisk at", f"Asterisk {text.split('+')[0]} at", 1)
    return [login, registered, version]


async def _ari_login(client: AriClient, ari: Any, timeout: float) -> Check:
    url, user = shown_url(ari.url), ari.username
    fix_url = f"start Asterisk or fix {key('ari.url')}; its http.conf needs enabled = yes and that bindaddr:bindport"
    try:
        data = await client.call("ping")
    except AriError as exc:
        if exc.status == 0:
            return network_failure("ari_login", url, exc.__cause__, timeout, fix_url)
        detail, hint = {
            401: (f"Asterisk at {url} rejected user {user!r} (HTTP 401): "
                  + ("ari.password is empty" if not ari.password else "wrong username or password"),
                  f"set {key('ari.username')} and {key('ari.password')} to a user of ari.conf"),
            403: (f"Asterisk at {url} denied user {user!r} (HTTP 403: {exc.message})",
                  "allow this machine in the user's permit/deny/acl in ari.conf"),
            404: (f"no ARI at {url}/ari (HTTP 404)", f"check {key('ari.url')} and the prefix in Asterisk's http.conf "
                  "(URL = http://host:port[/prefix]); ari.conf needs enabled = yes"),
            503: (f"Asterisk at {url} has not finished booting (HTTP 503)",
                  "wait until Asterisk is fully booted, then check again"),
        }.get(exc.status, (f"Asterisk at {url} answered HTTP {exc.status}: {exc.message}", fix_url))
        return Check("ari_login", False, detail, hint)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("ping") != "pong":
        return Check("ari_login", False, f"{url}/ari/asterisk/ping answered, but not as Asterisk ARI", fix_url)
    return Check("ari_login", True, f"Asterisk at {url} as user {user!r}")


def network_failure(name: str, url: str, cause: BaseException | None, timeout: float, fix: str) -> Check:
    """A failed connection: timeout, DNS, refused or else (aiohttp and websockets errors alike)."""
    os_error = getattr(cause, "os_error", cause)  # aiohttp wraps the OSError
    if isinstance(cause, TimeoutError):
        return Check(name, False, f"no answer from {url} within {timeout:g} s", fix + " (or a firewall or proxy)")
    if isinstance(os_error, socket.gaierror):
        return Check(name, False, f"cannot resolve host {urlsplit(url).hostname} of {url}", fix)
    if isinstance(os_error, ConnectionRefusedError):
        return Check(name, False, f"connection refused by {url}", fix)
    return Check(name, False, f"cannot reach {url}: {type(cause).__name__}: {cause}", fix)


async def _ari_app(client: AriClient, name: str, app: Any) -> Check:
    try:
        await client.call("get_application", applicationName=name)
        registered = True
    except AriNotFound:
        registered = False
    except AriError as exc:
        return Check("ari_app", False, f"could not ask Asterisk about app {name}: {exc}")
    if app is not None:
        if not app.ari_connected:
            why = getattr(getattr(app, "stream", None), "last_error", "") or "not connected yet"
            return Check("ari_app", False, f"aribot's events WebSocket for app {name} is down ({why})",
                         f"Stasis({name}) calls fail until it reconnects (it retries by itself); see ari_login")
        if registered:
            return Check("ari_app", True, f"this aribot is connected to app {name}")
        return Check("ari_app", False, f"aribot is connected, but Asterisk does not list app {name}",
                     "another ARI client took the app over and left; restart aribot")
    if registered:
        return Check("ari_app", True, f"app {name} is registered: an aribot (or another ARI client) is connected to it")
    return Check("ari_app", True, f"no aribot is connected to app {name}",
                 f"Stasis({name}) calls fail until `aribot serve` runs")


async def _asterisk_version(client: AriClient) -> tuple[Check, str]:
    try:
        info = await client.call("asterisk_info", only=["build", "system"])
        version, build = str(info["system"]["version"]), info.get("build") or {}
    except (AriError, ValueError, TypeError, KeyError) as exc:
        return Check("asterisk_version", False, f"could not read the version from /asterisk/info: {exc}"), ""
    where = " ".join(str(build[k]) for k in ("os", "machine") if build.get(k) not in (None, "", "unknown"))
    detail = f"Asterisk {version}" + (f" on {where}" if where else "")
    match = re.match(r"(?:certified[-/])?(\d+)\.(\d+)", version)
    tested = f"aribot is tested on Asterisk {TESTED_MAJOR}"
    if not match:
        return Check("asterisk_version", True, detail, tested), version
    if (int(match[1]), int(match[2])) < EXTERNAL_MEDIA_SINCE:
        return Check("asterisk_version", False, detail + ": no ExternalMedia (it came in 16.6)",
                     f"upgrade Asterisk; {tested}"), version
    if int(match[1]) < TESTED_MAJOR:
        return Check("asterisk_version", True, detail, f"ExternalMedia over RTP works from 16.6 but {tested}"), version
    return Check("asterisk_version", True, detail), version


# --- RTP ---------------------------------------------------------------------------------------

async def is_loopback(host: str, timeout: float = 2.0) -> bool | None:
    """True/False for an address or a name that resolves; None when the name does not resolve."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, None), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def free_ports(host: str, port_min: int, port_max: int) -> tuple[int, int]:
    """``(free, tried)`` UDP ports of the range on ``host`` (at most PORT_SAMPLE, evenly spread);
    raises OSError when ``host`` itself cannot be bound."""
    ports = range(port_min, port_max + 1)
    sample = ports if len(ports) <= PORT_SAMPLE else [ports[i * len(ports) // PORT_SAMPLE] for i in range(PORT_SAMPLE)]
    free = 0
    for port in sample:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
                free += 1
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
    return free, len(sample)


async def check_rtp(settings: Any, *, timeout: float = 5.0) -> Check:
    """``rtp_address``: the range is bindable, and Asterisk is given an address it can send to."""
    rtp = settings.rtp
    host, target = rtp.host, rtp.advertise_host or rtp.host
    span = f"{host}:{rtp.port_min}-{rtp.port_max}"
    try:
        free, tried = free_ports(host, rtp.port_min, rtp.port_max)
    except OSError as exc:
        return Check("rtp_address", False, f"cannot bind UDP on rtp.host {host}: {exc.strerror or exc}",
                     f"set {key('rtp.host')} to an address of this machine (or 0.0.0.0)")
    if not free:
        return Check("rtp_address", False, f"no free UDP port in {span} ({tried} tried, all in use)",
                     f"choose a free range with {key('rtp.port_min')} and {key('rtp.port_max')}")
    field = "rtp.advertise_host" if rtp.advertise_host else "rtp.host"
    if target.strip("[]") in ("", "0.0.0.0", "::"):
        return Check("rtp_address", False, f"Asterisk would be told to send RTP to {target} ({field})",
                     f"set {key('rtp.advertise_host')} to this machine's address as Asterisk sees it")
    ari_host = urlsplit(settings.ari.url).hostname or ""
    target_loop = await is_loopback(target, timeout)
    if target_loop and await is_loopback(ari_host, timeout) is False:
        return Check("rtp_address", False, f"Asterisk at {ari_host} cannot reach {target}",
                     f"set {key('rtp.advertise_host')} to an address Asterisk can reach")
    if target_loop is False and await is_loopback(host, timeout):
        return Check("rtp_address", False, f"rtp.host {host} only receives on loopback, but Asterisk is told to "
                     f"send RTP to {target}", f"set {key('rtp.host')} to {target} or 0.0.0.0")
    sampled = "sampled " if tried <= rtp.port_max - rtp.port_min else ""
    return Check("rtp_address", True,
                 f"UDP {span}: {free} of {tried} {sampled}ports free; Asterisk sends RTP to {target}")


# --- the speech backend --------------------------------------------------------------------------

async def check_backend(settings: Any, backends: dict[str, Any], *, timeout: float = 5.0) -> Check:
    """``backend``: the chosen backend's own check (reach its service, authenticate, spend no AI
    minute); a backend without one is reported as not checked."""
    name = str(settings.ai.backend)
    backend = backends.get(name)
    if backend is None:
        return Check("backend", False, f"ai.backend = {name!r} is not a registered backend",
                     f"set {key('ai.backend')} to one of {', '.join(sorted(backends)) or 'none (no backend plugin)'}")
    if backend.check is None:
        return Check("backend", True, f"{name}: this backend has no check", skipped=True)
    result = await backend.check(settings, timeout)
    check = result if isinstance(result, Check) else Check("backend", *result)
    check.name, check.detail = "backend", f"{name}: {check.detail}"
    return check

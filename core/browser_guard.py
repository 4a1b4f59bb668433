"""Which browsers may talk to aribot: the ``Host`` and ``Origin`` rules of every browser-facing
endpoint (the dashboard, the HTTP API and its /logs WebSocket).

- ``Host`` must be a loopback name (``localhost``, ``127.x.x.x``, ``[::1]``, any port), the address
  the server is bound to (when it is one address, not 0.0.0.0 or ::) or a name listed in
  ``allowed_hosts``. A DNS-rebinding page reaches a loopback server under the attacker's own name,
  which its browser sends as ``Host``: that request is refused (421, the request reached a server
  that does not serve that name).
- ``Origin``, when the request has one, must be the request's own ``scheme://host:port`` or one
  listed in ``allowed_origins``. A browser sends ``Origin`` on every WebSocket and every POST, so a
  page of another site cannot open the dashboard's socket or /logs (cross-site WebSocket
  hijacking) nor post to a route (403). Clients that are not browsers send no ``Origin``; they pass
  this check and still need the password or token.

Pure: header values in, a ``Refusal`` (or None) out; the aiohttp and ASGI shells call it. No header
value, however malformed, makes it raise.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable

DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
_NAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?")  # a DNS name or IPv4 literal, lower case
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class Refusal:
    status: int   # 421: a Host this server does not serve; 403: a foreign Origin
    reason: str   # one line for the log and the answer: header values quoted and cut short, no secrets


def shown(value: str | None, limit: int = 80) -> str:
    """A header value fit for one log line: quoted, control characters escaped, cut short."""
    if value is None:
        return "none"
    return repr(value[:limit] + ("…" if len(value) > limit else ""))


def split_host(value: str) -> tuple[str, int | None] | None:
    """``'Example.COM:8080'`` → ``('example.com', 8080)``, ``'[::1]'`` → ``('[::1]', None)``; None
    when ``value`` is not a host with an optional port (IPv6 only in brackets, as in a URL)."""
    text = value.strip().lower()
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[:end + 1], text[end + 1:]
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    else:
        name, _, rest = text.partition(":")
        rest = ":" + rest if _ else ""
        if not _NAME.fullmatch(name):
            return None
    if rest:
        if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
            return None
        port = int(rest[1:])
    return name, port


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``'https://Dash.example'`` → ``('https', 'dash.example', 443)``; None for ``null``, another
    scheme, a path or anything else that is not a web origin."""
    scheme, sep, rest = value.strip().lower().partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        return None
    host = split_host(rest.removesuffix("/")) if rest and rest.count("/") <= int(rest.endswith("/")) else None
    if host is None:
        return None
    return scheme, host[0], host[1] if host[1] is not None else DEFAULT_PORTS[scheme]


def is_loopback_name(name: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``[::1]`` (as split_host returns it)."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]") if name.startswith("[") else name).is_loopback
    except ValueError:
        return False


def host_entries(value: Any) -> list[str]:
    """Settings parser: a list (or comma-separated string) of ``name`` or ``name:port`` entries
    (``[::1]`` style for IPv6), or ``*`` for any host."""
    from aribot.core.settings import str_list

    entries = [entry.strip().lower() for entry in str_list(value)]
    for entry in entries:
        if entry != "*" and split_host(entry) is None:
            raise ValueError(entry)
    return entries


def origin_entries(value: Any) -> list[str]:
    """Settings parser: a list (or comma-separated string) of origins such as ``https://dash.example``."""
    from aribot.core.settings import str_list

    entries = str_list(value)
    for entry in entries:
        if parse_origin(entry) is None:
            raise ValueError(entry)
    return entries


class BrowserGuard:
    """The Host and Origin rules of one server. ``section`` names its settings table in refusals."""

    def __init__(self, section: str, bound_host: str = "", allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()) -> None:
        self.section = section
        self.any_host = False
        self.hosts: set[tuple[str, int | None]] = set()
        for entry in allowed_hosts:
            if entry.strip() == "*":
                self.any_host = True
            elif (parsed := split_host(entry)) is not None:
                self.hosts.add(parsed)
        bound = str(bound_host).strip().lower()
        self.wildcard = bound in WILDCARD_BINDS and not self.hosts and not self.any_host
        if bound not in WILDCARD_BINDS:
            literal = f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound
            if (parsed := split_host(literal)) is not None:
                self.hosts.add((parsed[0], None))
        self.origins = {parsed for entry in allowed_origins if (parsed := parse_origin(entry)) is not None}

    def startup_note(self) -> str | None:
        """A line for the start-up log when the server listens on every address but answers no
        name but loopback (other machines would get 421 until their name is listed)."""
        if not self.wildcard:
            return None
        return (f"it answers only loopback names until {self.section}.allowed_hosts lists the names or addresses "
                "other machines use")

    def host_allowed(self, name: str, port: int | None) -> bool:
        return (self.any_host or is_loopback_name(name) or (name, None) in self.hosts
                or (port is not None and (name, port) in self.hosts))

    def check(self, host: str | None, origin: str | None, scheme: str) -> Refusal | None:
        """None when a request with these ``Host`` and ``Origin`` headers (None = absent) arriving
        over ``scheme`` (http, https, ws or wss) may proceed, else why not."""
        parsed = split_host(host) if host else None
        if parsed is None or not self.host_allowed(*parsed):
            given_host = "no Host header" if host is None else f"Host {shown(host)}"
            return Refusal(421, f"{given_host} is not a loopback name nor listed in {self.section}.allowed_hosts")
        if origin is None:
            return None  # not a browser (a browser sends Origin on every WebSocket and POST)
        given = parse_origin(origin)
        own_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        own = (own_scheme, parsed[0], parsed[1] if parsed[1] is not None else DEFAULT_PORTS.get(own_scheme, 0))
        if given is None or (given != own and given not in self.origins):
            return Refusal(403, f"Origin {shown(origin)} is not this server's own origin nor listed in "
                                f"{self.section}.allowed_origins")
        return None

"""The Host and Origin rules (core.browser_guard) on their own: which names and origins pass, what a
refusal says, the settings that list more, and that no header value whatever makes them raise."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aribot.core.app import configure
from aribot.core.browser_guard import BrowserGuard, Refusal, host_entries, origin_entries, parse_origin, split_host
from aribot.core.settings import SettingsError

LOOPBACK = ["localhost", "localhost:8080", "LOCALHOST:80", "127.0.0.1", "127.0.0.1:1", "127.9.8.7:65535",
            "[::1]", "[::1]:8080"]
FOREIGN = ["evil.example", "evil.example:8080", "localhost.evil.example", "127.0.0.1.nip.io:8080", "10.0.0.5",
           "0.0.0.0:8080", "[::]:8080", "[2001:db8::1]", "", "  ", "::1", "localhost:99999", "localhost:abc",
           "localhost:", "[::1", "user@localhost", "localhost/x", "local host", "localhost\r\nX-Evil: 1",
           "xn--80ak6aa92e.com", "127.1"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_names_pass_with_any_port(host: str) -> None:
    assert BrowserGuard("ui").check(host, None, "http") is None


@pytest.mark.parametrize("host", FOREIGN)
def test_any_other_host_is_refused_with_421(host: str) -> None:
    refusal = BrowserGuard("ui").check(host, None, "http")
    assert refusal is not None and refusal.status == 421
    assert "ui.allowed_hosts" in refusal.reason and "\n" not in refusal.reason and "\r" not in refusal.reason


def test_no_host_header_is_refused() -> None:
    assert BrowserGuard("http").check(None, None, "http") == Refusal(
        421, "no Host header is not a loopback name nor listed in http.allowed_hosts")


def test_the_bound_address_and_listed_names_pass() -> None:
    assert BrowserGuard("ui", "10.0.0.5").check("10.0.0.5:8080", None, "http") is None
    assert BrowserGuard("ui", "::1").check("[::1]:8080", None, "http") is None
    assert BrowserGuard("ui", "0.0.0.0").check("0.0.0.0:8080", None, "http") is not None  # a wildcard is no name
    listed = BrowserGuard("ui", "0.0.0.0", ["Dash.Example.com", "other.example:8443"])
    assert listed.check("dash.example.com", None, "https") is None
    assert listed.check("DASH.example.COM:9999", None, "http") is None     # no port listed: any port
    assert listed.check("other.example:8443", None, "http") is None
    assert listed.check("other.example:8444", None, "http") is not None    # a port listed: that port only
    assert listed.check("evil.example", None, "http") is not None
    assert BrowserGuard("ui", "", ["*"]).check("anything.example", None, "http") is None


def test_a_wildcard_bind_without_names_is_said_at_start() -> None:
    note = BrowserGuard("ui", "0.0.0.0").startup_note()
    assert note is not None and "ui.allowed_hosts" in note
    assert BrowserGuard("ui", "0.0.0.0", ["aribot.lan"]).startup_note() is None
    assert BrowserGuard("http", "127.0.0.1").startup_note() is None
    assert BrowserGuard("http", "10.0.0.5").startup_note() is None


@pytest.mark.parametrize(("host", "origin", "scheme"), [
    ("127.0.0.1:8080", "http://127.0.0.1:8080", "http"),
    ("127.0.0.1:8080", "http://127.0.0.1:8080", "ws"),
    ("localhost", "http://localhost", "http"),           # default ports on both sides
    ("localhost", "http://localhost:80", "ws"),
    ("localhost:443", "https://localhost", "wss"),
    ("[::1]:8080", "http://[::1]:8080", "ws"),
    ("LocalHost:8080", "HTTP://localhost:8080", "http"),
])
def test_the_own_origin_passes(host: str, origin: str, scheme: str) -> None:
    assert BrowserGuard("http").check(host, origin, scheme) is None


@pytest.mark.parametrize(("host", "origin", "scheme"), [
    ("127.0.0.1:8081", "http://evil.example", "ws"),
    ("127.0.0.1:8081", "http://127.0.0.1:3000", "ws"),      # another local service is another origin
    ("127.0.0.1:8081", "http://localhost:8081", "ws"),      # another name is another origin
    ("127.0.0.1:8081", "https://127.0.0.1:8081", "ws"),     # another scheme is another origin
    ("127.0.0.1:8081", "null", "ws"),                       # sandboxed frames, file:// pages
    ("127.0.0.1:8081", "", "http"),
    ("127.0.0.1:8081", "file://", "http"),
    ("127.0.0.1:8081", "http://127.0.0.1:8081/path", "http"),
    ("127.0.0.1:8081", "chrome-extension://abcdef", "ws"),
])
def test_a_foreign_origin_is_refused_with_403(host: str, origin: str, scheme: str) -> None:
    refusal = BrowserGuard("http").check(host, origin, scheme)
    assert refusal is not None and refusal.status == 403 and "http.allowed_origins" in refusal.reason


def test_listed_origins_pass_and_nothing_else() -> None:
    guard = BrowserGuard("ui", "127.0.0.1", ["dash.example.com"], ["https://dash.example.com", "http://10.1.1.1:81/"])
    assert guard.check("dash.example.com", "https://dash.example.com", "ws") is None   # a TLS proxy in front
    assert guard.check("dash.example.com", "https://dash.example.com:443", "ws") is None
    assert guard.check("127.0.0.1:8080", "http://10.1.1.1:81", "ws") is None
    assert guard.check("dash.example.com", "http://dash.example.com:8443", "ws") is not None
    assert guard.check("dash.example.com", "https://evil.example", "ws") is not None


def test_a_refusal_quotes_the_header_cut_short_and_on_one_line() -> None:
    refusal = BrowserGuard("ui").check("127.0.0.1", "http://" + "e" * 500 + "\nX: y", "ws")
    assert refusal is not None and len(refusal.reason) < 200 and "\n" not in refusal.reason


def test_parsers() -> None:
    assert split_host("Example.COM:8080") == ("example.com", 8080)
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("[zz::1]:80") is None
    assert parse_origin("https://Dash.example") == ("https", "dash.example", 443)
    assert parse_origin("http://[::1]:8080") == ("http", "[::1]", 8080)
    assert parse_origin("ws://localhost") is None


def test_settings_are_checked_at_start(tmp_path: Path) -> None:
    assert host_entries("a.example, b.example:81") == ["a.example", "b.example:81"]
    assert origin_entries(["https://a.example"]) == ["https://a.example"]
    for bad in ("https://a.example", "a.example/x", "a b"):
        with pytest.raises(ValueError):
            host_entries([bad])
    for bad in ("a.example", "https://a.example/x", "null"):
        with pytest.raises(ValueError):
            origin_entries([bad])
    path = tmp_path / "settings.toml"
    path.write_text('[http]\nallowed_hosts = ["http://aribot.example.com"]\n[history]\nenabled = false\n')
    with pytest.raises(SettingsError, match=r"http.allowed_hosts .*http://aribot.example.com"):
        configure(path)
    path.write_text('[ui]\nallowed_origins = ["dash.example.com"]\n[history]\nenabled = false\n')
    with pytest.raises(SettingsError, match=r"ui.allowed_origins .*dash.example.com"):
        configure(path)
    path.write_text('[http]\nallowed_hosts = ["aribot.example.com"]\n'
                    '[ui]\nallowed_origins = ["https://dash.example.com"]\n[history]\nenabled = false\n')
    settings, _plugins = configure(path)
    assert settings.http.allowed_hosts == ["aribot.example.com"]
    assert settings.ui.allowed_origins == ["https://dash.example.com"]


HEADERS = st.one_of(st.none(), st.text(), st.text(alphabet=st.characters(max_codepoint=0x7f)),
                    st.from_regex(r"\A(https?://)?(\[[0-9a-f:]*\]|[a-z0-9.\-]*)(:[0-9]{0,6})?/?\Z"))
GUARDS = [BrowserGuard("ui"),
          BrowserGuard("http", "10.0.0.5", ["a.example", "b.example:81", "*"], ["https://a.example"]),
          BrowserGuard("ui", "::", ["[::1]:80"], ["http://[::1]"])]


@given(host=HEADERS, origin=HEADERS, scheme=st.sampled_from(["http", "https", "ws", "wss", ""]) | st.text(),
       guard=st.sampled_from(GUARDS))
def test_no_header_value_makes_the_guard_raise(host: str | None, origin: str | None, scheme: str,
                                               guard: BrowserGuard) -> None:
    refusal = guard.check(host, origin, scheme)
    if refusal is not None:
        assert refusal.status in (403, 421)
        assert refusal.reason.isprintable() and len(refusal.reason) < 240  # one line, however odd the header
    elif not guard.any_host:
        assert host is not None and split_host(host) is not None      # nothing passes that does not parse


@given(value=st.text())
def test_no_value_makes_the_parsers_raise(value: str) -> None:
    split_host(value)
    parse_origin(value)
    for parse in (host_entries, origin_entries):
        try:
            parse([value])
        except ValueError:
            pass

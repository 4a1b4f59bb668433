"""ARI errors as aribot's client raises them against a stand-in ARI server: which HTTP status
becomes which AriError subclass, what the message says (the operation and Asterisk's reason,
never the ARI password), and what a stalled or unreachable Asterisk becomes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from aribot.core.ari import (
    AriClient,
    AriConflict,
    AriError,
    AriNotFound,
    AriUnavailable,
    AriUnprocessable,
)  # fmt: skip
from aribot.sandbox.ports import free_tcp_port

USERNAME, PASSWORD = "aribot", "s3cret-ari-password"
SECRETS = (PASSWORD, base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode())


class FakeAri:
    """Answers every request with ``reply`` (status, body, content type), or never (``stall``)."""

    def __init__(self) -> None:
        self.reply: tuple[int, str, str] = (204, "", "application/json")
        self.stall = False
        self.requests: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        if self.stall:
            await asyncio.Event().wait()
        status, body, content_type = self.reply
        return web.Response(status=status, text=body or None, content_type=content_type)


ClientFor = Callable[..., Awaitable[AriClient]]


@pytest.fixture
async def fake_ari() -> FakeAri:
    return FakeAri()


@pytest.fixture
async def client_for(aiohttp_server: Any, fake_ari: FakeAri) -> AsyncIterator[ClientFor]:
    """``await client_for()``: an AriClient talking to ``fake_ari`` (``url=``: elsewhere)."""
    clients: list[AriClient] = []
    server = web.Application()
    server.router.add_route("*", "/ari/{tail:.*}", fake_ari.handle)
    running = await aiohttp_server(server)

    async def make(url: str = "", request_timeout: float = 5.0) -> AriClient:
        client = AriClient(url or str(running.make_url("/")), USERNAME, PASSWORD, request_timeout=request_timeout)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), str(exc.__cause__), repr(exc.__cause__)):
        assert not any(secret in text for secret in SECRETS), text


@pytest.mark.parametrize(("status", "kind"), [
    (400, AriError), (401, AriError), (403, AriError), (404, AriNotFound), (409, AriConflict), (412, AriError),
    (422, AriUnprocessable), (500, AriUnavailable), (501, AriUnavailable), (503, AriUnavailable),
])  # fmt: skip
async def test_each_status_becomes_its_error_class(
    client_for: ClientFor, fake_ari: FakeAri, status: int, kind: type[AriError]
) -> None:
    fake_ari.reply = (status, '{"message": "Channel not found"}', "application/json")
    client = await client_for()
    with pytest.raises(AriError) as caught:
        await client.call("answer", channelId="1795469297.0")
    exc = caught.value
    assert type(exc) is kind
    assert (exc.op, exc.status, exc.message) == ("answer", status, "Channel not found")
    assert str(exc) == f"ARI answer failed: {status} Channel not found"
    assert fake_ari.requests == [("POST", "/ari/channels/1795469297.0/answer")]
    assert_no_secret(exc)


@pytest.mark.parametrize(("body", "content_type", "message"), [
    ('{"error": "odd"}', "application/json", '{"error": "odd"}'),   # JSON without "message": the text
    ("<html>" + "x" * 300, "text/html", "<html>" + "x" * 194),      # not JSON: the first 200 characters
    ("", "application/json", ""),
])  # fmt: skip
async def test_the_message_is_asterisks_reason_or_the_start_of_the_body(
    client_for: ClientFor, fake_ari: FakeAri, body: str, content_type: str, message: str
) -> None:
    fake_ari.reply = (500, body, content_type)
    client = await client_for()
    with pytest.raises(AriUnavailable) as caught:
        await client.call("destroy_bridge", bridgeId="b1")
    assert caught.value.message == message
    assert str(caught.value).startswith("ARI destroy_bridge failed: 500")


async def test_a_request_that_gets_no_answer_times_out_as_unavailable(client_for: ClientFor, fake_ari: FakeAri) -> None:
    fake_ari.stall = True
    client = await client_for(request_timeout=0.2)
    with pytest.raises(AriUnavailable) as caught:
        await client.call("external_media", app="a", channelId="em-1", external_host="127.0.0.1:9", format="ulaw")
    exc = caught.value
    assert exc.status == 0 and isinstance(exc.__cause__, asyncio.TimeoutError)
    assert str(exc) == "ARI external_media failed: no response within 0.2 s (ari.request_timeout)"
    assert_no_secret(exc)


async def test_an_unreachable_asterisk_is_unavailable(client_for: ClientFor) -> None:
    client = await client_for(url=f"http://127.0.0.1:{free_tcp_port()}")
    with pytest.raises(AriUnavailable) as caught:
        await client.call("hangup", channelId="c1", reason="normal")
    exc = caught.value
    assert exc.status == 0
    assert str(exc).startswith("ARI hangup failed: no response ClientConnectorError: Cannot connect to host")
    assert_no_secret(exc)


async def test_success_is_not_an_error(client_for: ClientFor, fake_ari: FakeAri) -> None:
    client = await client_for()
    assert await client.call("answer", channelId="c1") is None                       # 204
    fake_ari.reply = (200, '{"id": "b1", "technology": "simple_bridge"}', "application/json")
    assert await client.call("create_bridge", bridgeId="b1", type="mixing") == {"id": "b1",
                                                                                "technology": "simple_bridge"}

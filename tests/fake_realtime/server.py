"""``FakeRealtimeServer``: the engine's ``RealtimeServer`` with every sent frame checked against
the openai SDK's GA server event models (``validation.check_server_event``)."""

from __future__ import annotations

from aribot.plugins.local_backend.realtime.server import (  # noqa: F401  (re-exported for the tests)
    AZURE_PATH,
    OPENAI_PATH,
    FakeBugError,
    RealtimeServer,
    ScriptSource,
)

from .validation import check_server_event


class FakeRealtimeServer(RealtimeServer):
    """A strict local stand-in for ``wss://api.openai.com/v1/realtime`` (GA protocol).

    ``validate_outgoing=False`` skips the SDK check (benchmarks: it costs CPU per frame);
    ``keep_records`` bounds what each connection records (see ``RealtimeServer``).
    """

    def __init__(self, *, api_key: str | None = "test-key", script: ScriptSource = None,
                 validate_outgoing: bool = True, keep_records: int | None = None) -> None:
        super().__init__(api_key=api_key, script=script,
                         validator=check_server_event if validate_outgoing else None, keep_records=keep_records)

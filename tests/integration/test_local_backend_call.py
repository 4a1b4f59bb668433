"""A real sipp call through the lab Asterisk to aribot with ``[ai] backend = "local"``: the caller
hears the local backend's phrase and then their own words, byte-exact, and the caller's turn is
transcribed offline. The backend is the openai_realtime plugin's client pointed at the local
server (no setting of another backend is touched); the server's every frame is checked against the
openai SDK's GA models."""

from __future__ import annotations

from pathlib import Path

from aribot.core.events import Transcript
from aribot.plugins.local_backend.plugin import PAUSE_MS, LocalBackend
from aribot.plugins.local_backend.voice import synthesize
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.validation import check_server_event
from tests.lab.audio import silence
from tests.lab.calls import place_call
from tests.lab.sniffer import RtpSniffer


async def test_the_caller_hears_their_own_words_back(
    asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, make_aribot, tmp_path: Path
) -> None:
    app = await make_aribot("ws://127.0.0.1:9/v1/realtime", ai={"backend": "local"})
    backend: LocalBackend = app.extensions["local_backend"]
    assert backend.server is not None
    assert app.settings.openai.url == "ws://127.0.0.1:9/v1/realtime"   # no other backend's settings rewritten
    backend.server.validator = check_server_event
    transcripts: list[Transcript] = []
    app.bus.subscribe(Transcript, transcripts.append)

    words = synthesize("hello, this is a test call")
    placed = await place_call(asterisk_lab, tmp_path / "sipp", silence(600) + words + silence(7000), audio_delay_ms=300,
                              hold_ms_after_audio=300, sniffer=rtp_sniffer)

    heard = b"".join(p.payload for p in rtp_sniffer.packets(placed.caller.media_port) if p.pt == 0)
    assert heard.startswith(backend.phrases["heard"] + b"\xff" * 8 * PAUSE_MS)
    assert words in heard  # the caller's own audio came back through Asterisk, aribot and the backend, byte-exact
    said = [t.text for t in transcripts if t.role == "caller"]
    assert len(said) == 1 and said[0].strip(), transcripts  # pocketsphinx heard words
    assert [t.text for t in transcripts if t.role == "assistant"][0].startswith("I heard you say")
    assert backend.server.fake_bugs == []

"""A third party's speech backend as a drop-in package (examples/aribot-example-backend): pip
installed, chosen by [ai] backend, it serves a call through the real Asterisk like a built-in —
the caller hears its phrase after each turn, byte-exact, and the call ends clean."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aribot.core.events import Transcript
from aribot.sandbox.asterisk import AsteriskLab
from tests.fake_realtime.server import FakeRealtimeServer
from tests.lab.calls import caller_turns, padded, place_call
from tests.lab.examples import installed_example
from tests.lab.probe import subscribe
from tests.lab.sniffer import RtpSniffer


@pytest.fixture(scope="module")
def example_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with installed_example("aribot-example-backend", tmp_path_factory.mktemp("backend"),
                           "aribot_example_backend") as site:
        yield site


async def test_a_drop_in_backend_answers_each_turn(
    example_backend: Path, asterisk_lab: AsteriskLab, rtp_sniffer: RtpSniffer, fake: FakeRealtimeServer,
    make_aribot, tmp_path: Path,
) -> None:
    import aribot_example_backend as example

    app = await make_aribot(fake.url, ai={"backend": "fixed_phrase"})
    assert app.backends["fixed_phrase"].description == "answers every caller turn with one fixed phrase"
    transcripts = subscribe(app, Transcript)
    placed = await place_call(asterisk_lab, tmp_path / "sipp", caller_turns(600, 600, gap_ms=2000),
                              audio_delay_ms=300, hold_ms_after_audio=300, sniffer=rtp_sniffer)
    phrase = example.chime("ulaw")
    assert placed.audio == padded(phrase) * 2                       # the phrase after each of the two turns
    assert [(t.role, t.text) for t in transcripts] == [("caller", "(speech)"), ("assistant", "Thank you, I heard you.")] * 2
    assert fake.connections == []                                   # no other backend was used

"""A call placed with sipp through the lab Asterisk, and what the caller heard.

``place_call`` is the block every call test needs: start the sipp caller, watch its media port
with the RTP sniffer, run the call to its end, check sipp succeeded, and keep the frames the
caller heard. The helpers below read those frames and the fake AI's side of the call.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aribot.sandbox.asterisk import AsteriskLab
from tests.lab.audio import FRAME_BYTES, SILENCE_BYTES, silence, speech
from tests.lab.sipp import SippCaller, SippResult
from tests.lab.sniffer import Captured, RtpSniffer

FRAME = FRAME_BYTES
PAYLOAD_TYPES = {"ulaw": 0, "alaw": 8}


def padded(audio: bytes, codec: str = "ulaw") -> bytes:
    """What the caller hears of one AI item: the audio, its last frame padded with silence."""
    return audio + bytes([SILENCE_BYTES[codec]]) * (-len(audio) % FRAME)


def caller_turns(*speech_ms: int, gap_ms: int = 2500, seed: int = 0) -> bytes:
    """Lead-in silence, then each utterance followed by a silence long enough for an AI answer."""
    audio = silence(400)
    for index, ms in enumerate(speech_ms):
        audio += speech(ms, seed=seed * 100 + index) + silence(gap_ms)
    return audio


def heard(sniffer: RtpSniffer, port: int, codec: str = "ulaw") -> list[Captured]:
    """The audio packets Asterisk sent to the caller's media port (DTMF and others left out)."""
    return [p for p in sniffer.packets(port) if p.pt == PAYLOAD_TYPES[codec]]


def audible_frames(packets: list[Captured]) -> int:
    """Frames of audible (not all-silence) audio among ``packets``, e.g. a prompt Asterisk played."""
    return sum(1 for p in packets if len(set(p.payload)) > 4)


def prompt_frames(sniffer: RtpSniffer, port: int) -> int:
    """Frames of audible audio Asterisk sent to the caller."""
    return audible_frames(heard(sniffer, port))


def tool_outputs(conn: Any) -> list[dict[str, Any]]:
    """Every function_call_output aribot sent on a fake Realtime connection, decoded."""
    return [json.loads(e["item"]["output"]) for e in conn.received_of_type("conversation.item.create")
            if e["item"]["type"] == "function_call_output"]


@dataclass
class PlacedCall:
    """A finished sipp call: the caller, sipp's result, and the audio packets the caller heard."""

    caller: SippCaller
    result: SippResult
    packets: list[Captured] = field(default_factory=list)

    @property
    def audio(self) -> bytes:
        """Every byte of audio the caller heard, in order."""
        return b"".join(p.payload for p in self.packets)


def start_call(lab: AsteriskLab, workdir: Path, audio: bytes, *, sniffer: RtpSniffer | None = None,
               **sipp: Any) -> tuple[SippCaller, asyncio.Task[SippResult]]:
    """``place_call`` in the background, for a test that acts during the call: the caller (its
    media port watched by ``sniffer``) and the task that ends with sipp's result."""
    caller = SippCaller(lab, workdir, audio, **sipp)
    if sniffer is not None:
        sniffer.watch(caller.media_port)
    return caller, asyncio.create_task(caller.run(), name=f"sipp-{workdir.name}")


async def place_call(lab: AsteriskLab, workdir: Path, audio: bytes, *, sniffer: RtpSniffer | None = None,
                     expect_ok: bool = True, **sipp: Any) -> PlacedCall:
    """Call ``lab`` with sipp playing ``audio`` (``sipp``: SippCaller's other arguments), to the
    end. With ``sniffer`` the caller's media port is watched from the start and ``packets`` holds
    what the caller heard. ``expect_ok``: fail the test unless sipp succeeded."""
    caller, run = start_call(lab, workdir, audio, sniffer=sniffer, **sipp)
    result = await run
    if expect_ok:
        assert result.ok, result.error
    packets = heard(sniffer, caller.media_port, caller.codec) if sniffer is not None else []
    return PlacedCall(caller, result, packets)

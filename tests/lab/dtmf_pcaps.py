"""RFC 4733 DTMF pcaps for sipp's ``play_pcap_audio``, derived from Debian's sip-tester files.

Debian's ``dtmf_2833_<key>.pcap`` send one key as 7 event packets 20 ms apart and the end packet
three times at once, with their own SSRC. sipp's voice stream (another SSRC) keeps flowing
beside them; when one voice packet lands between the three end packets, Asterisk 22 reports the
key a second time. ``spread_end_packets`` makes that happen on every key (the end packets 20 ms
apart), so a test can show aribot counts each press once.
"""

from __future__ import annotations

import struct
from pathlib import Path

from tests.lab.sipp_scenario import DTMF_PCAP_DIR

PCAP_HEADER = 24
RECORD_HEADER = 16
RTP_OFFSET = 14 + 20 + 8  # Ethernet, IPv4, UDP


def spread_end_packets(target: Path, gap_us: int = 20_000) -> Path:
    """Copies of every Debian DTMF pcap in ``target`` with the n-th end packet sent n·gap later."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(DTMF_PCAP_DIR.glob("dtmf_2833_*.pcap")):
        data = bytearray(source.read_bytes())
        offset, ends = PCAP_HEADER, 0
        while offset < len(data):
            seconds, micros, length, _ = struct.unpack_from("<IIII", data, offset)
            event_flags = data[offset + RECORD_HEADER + RTP_OFFSET + 13]
            if event_flags & 0x80:  # the E (end) bit of the telephone-event payload
                micros += ends * gap_us
                struct.pack_into("<II", data, offset, seconds + micros // 1_000_000, micros % 1_000_000)
                ends += 1
            offset += RECORD_HEADER + length
        if ends != 3:
            raise ValueError(f"{source}: expected 3 end packets, found {ends}")
        (target / source.name).write_bytes(data)
    return target

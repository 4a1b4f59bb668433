"""The recording's file: a stereo 16-bit PCM WAV, 8 kHz, left = the caller, right = the AI.

Why 16-bit PCM and not G.711 in the WAV (format 7 µ-law / 6 A-law, half the size): every player
plays PCM WAV (browsers, Python's ``wave``, editors), while G.711 WAV is refused by Python's
``wave`` and by several players. Decoding G.711 to 16-bit linear with core/g711.py's tables loses
nothing: every A-law byte and every µ-law byte but one (0x7F, -0, decodes like 0xFF, +0) maps to
its own sample, so the PCM is exactly the audio received and sent. It costs twice the disk:
32,000 bytes a second, 1.92 MB a call-minute.

Written as the call goes (blocking calls: run them in a worker thread): the header is written
first with sizes 0, each ``append`` writes whole frames and then the two sizes (RIFF and data),
so a file whose writer died (aribot killed, power kept) is a valid WAV holding everything but at
most the last append; ``repair`` sets its sizes from the file's length so that last part counts too.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from aribot.core.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR

RATE = 8000
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = CHANNELS * SAMPLE_BYTES          # one stereo sample: 4 bytes
BYTES_PER_S = RATE * FRAME_BYTES               # 32,000
HEADER_BYTES = 44
OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_TABLES = {"ulaw": ULAW_TO_LINEAR, "alaw": ALAW_TO_LINEAR}
# per G.711 byte: the low and the high byte of its 16-bit little-endian sample (bytes.translate tables)
_LOW = {fmt: bytes(v & 0xFF for v in table) for fmt, table in _TABLES.items()}
_HIGH = {fmt: bytes((v >> 8) & 0xFF for v in table) for fmt, table in _TABLES.items()}


def header(data_bytes: int) -> bytes:
    """The 44-byte header of a stereo 16-bit 8 kHz PCM WAV with ``data_bytes`` of samples."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, CHANNELS, RATE,
                       BYTES_PER_S, FRAME_BYTES, 8 * SAMPLE_BYTES, b"data", data_bytes)


def stereo_pcm(left: bytes, right: bytes, fmt: str) -> bytes:
    """Two equally long G.711 sides as interleaved 16-bit little-endian stereo (C-speed translates)."""
    out = bytearray(FRAME_BYTES * len(left))
    out[0::4] = left.translate(_LOW[fmt])
    out[1::4] = left.translate(_HIGH[fmt])
    out[2::4] = right.translate(_LOW[fmt])
    out[3::4] = right.translate(_HIGH[fmt])
    return bytes(out)


class WavFile:
    """One recording being written (worker thread only). Raises OSError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data_bytes = 0
        self._fd: int | None = None

    def open(self) -> None:
        """Create the file, private (0600); never an existing file or through a symbolic link."""
        self._fd = os.open(self.path, OPEN_FLAGS, 0o600)
        _write_all(self._fd, header(0))

    def append(self, pcm: bytes) -> None:
        """Write whole stereo frames, then the header's sizes."""
        if self._fd is None:
            raise OSError(f"{self.path} is not open")
        try:
            _write_all(self._fd, pcm)
            self.data_bytes += len(pcm)
        except _Partial as partial:   # e.g. the disk filled up: keep the whole frames written
            self.data_bytes += partial.written - partial.written % FRAME_BYTES
            self._sizes()
            raise partial.error from None
        self._sizes()

    def _sizes(self) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, struct.pack("<I", 36 + self.data_bytes), 4)
        os.pwrite(self._fd, struct.pack("<I", self.data_bytes), 40)

    def close(self) -> None:
        """Final sizes, flushed to the disk, closed."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, HEADER_BYTES + self.data_bytes)   # a partial frame of a failed write goes
            os.pwrite(fd, header(self.data_bytes), 0)
            os.fsync(fd)
        finally:
            os.close(fd)


class _Partial(Exception):
    def __init__(self, written: int, error: OSError) -> None:
        self.written, self.error = written, error


def _write_all(fd: int, data: bytes) -> None:
    view, written = memoryview(data), 0
    while written < len(data):
        try:
            written += os.write(fd, view[written:])
        except OSError as exc:
            raise _Partial(written, exc) from None


def repair(path: Path) -> bool:
    """Set the sizes in the header of a recording whose writer died to what the file holds (whole
    frames); True if they were changed. Raises OSError; a file that is not such a WAV is left alone."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        head = os.pread(fd, HEADER_BYTES, 0)
        size = os.fstat(fd).st_size
        if len(head) < HEADER_BYTES or head[:4] != b"RIFF" or head[8:40] != header(0)[8:40]:
            return False
        data_bytes = (size - HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES
        if head[40:44] == struct.pack("<I", data_bytes) and head[4:8] == struct.pack("<I", 36 + data_bytes):
            return False
        os.pwrite(fd, header(data_bytes), 0)
        return True
    finally:
        os.close(fd)

"""Call recording (plugins/recording): the stereo WAV writer (G.711 decoded exactly, the two sides
lined up by elapsed time, the header right at close and never ahead of the data while writing, a
file whose writer was killed still readable and repaired, bounded memory with a stalled disk, one
log line for an unwritable folder or a full disk), the consent setting, the history's column,
purge and delete, and the dashboard route."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from aribot.core import events as ev
from aribot.core.g711 import ALAW_TO_LINEAR, ULAW_TO_LINEAR
from aribot.plugins import recording as plugin
from aribot.plugins.history.store import SCHEMA_VERSION, HistoryStore
from aribot.plugins.recording import recorder as rec
from aribot.plugins.recording.route import inside, mount_recordings, recording_url
from aribot.plugins.recording.wav import HEADER_BYTES, header, repair, stereo_pcm

TABLES = {"ulaw": ULAW_TO_LINEAR, "alaw": ALAW_TO_LINEAR}


class FakeLoop:
    now = 0.0

    def time(self) -> float:
        return self.now


class FakeCall:
    def __init__(self, fmt: str = "ulaw", call_id: str = "c1") -> None:
        self.id = call_id
        self.started_at = 1_765_000_000.0
        self.settings = SimpleNamespace(rtp=SimpleNamespace(format=fmt))
        self.listeners: list[Any] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.stopping = False

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        self.listeners.remove(listener)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


def samples(data: bytes, fmt: str = "ulaw") -> list[int]:
    return [TABLES[fmt][b] for b in data]


def read_wav(path: Path) -> tuple[list[int], list[int], Any]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        frames = wav.readframes(wav.getnframes())
    values = struct.unpack(f"<{len(frames) // 2}h", frames)
    return list(values[0::2]), list(values[1::2]), params


async def settle(service: rec.Recordings) -> None:
    """Wait until the writer thread has done everything submitted so far."""
    await asyncio.get_running_loop().run_in_executor(service.executor, lambda: None)


@pytest.fixture
async def service(tmp_path: Path) -> Any:
    app = SimpleNamespace(extensions={})
    recordings = rec.Recordings(app, tmp_path / "rec", "")
    recordings.prepare_folder()
    yield recordings
    recordings.close()


def test_pcm_is_exactly_the_g711_tables() -> None:
    every = bytes(range(256))
    for fmt, table in TABLES.items():
        pcm = stereo_pcm(every, every[::-1], fmt)
        values = struct.unpack("<512h", pcm)
        assert list(values[0::2]) == list(table) and list(values[1::2]) == list(table)[::-1]


async def test_both_sides_are_aligned_by_elapsed_time_and_the_file_is_a_stereo_wav(service: rec.Recordings) -> None:
    call, loop = FakeCall(), FakeLoop()
    recording = service.start(call)
    assert recording is not None and call.listeners == [recording]
    recording._loop, recording._t0, recording.delay_s = loop, 0.0, 0.0
    caller = bytes(range(1, 161)) * 5                       # 100 ms of the caller from the start
    for n in range(5):
        recording.caller_audio(caller[160 * n:160 * (n + 1)])
    loop.now = 0.2                                          # 200 ms later: the AI's first frame (0.18-0.2 s)
    recording.ai_audio(bytes([0x80 + n % 16 for n in range(160)]))
    recording._queue(recording.take())
    loop.now = 0.3
    recording.caller_audio(b"\x11" * 160)
    recording.close()                                       # the end: what is due and what is held
    await settle(service)
    assert call.listeners == [] and all(t.cancelled() or t.done() for t in call.tasks)
    left, right, params = read_wav(recording.path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert len(left) == len(right) == 2400                  # 300 ms
    assert left[:800] == samples(caller) and left[800:1600] == [0] * 800   # caller, then padding
    begins = next(i for i in range(1600, 2400) if left[i])   # where it arrived (0.3 s - 20 ms), not at 0.2 s
    assert abs(begins - 2240) <= 1 and left[begins:begins + 160] == samples(b"\x11" * 160)
    ai = samples(bytes([0x80 + n % 16 for n in range(160)]))
    begins = next(i for i in range(2400) if right[i])
    assert abs(begins - 1440) <= 1 and right[begins:begins + 160] == ai and not any(right[begins + 160:])
    assert recording.path.stat().st_mode & 0o777 == 0o600
    assert service.folder.stat().st_mode & 0o777 == 0o700
    assert recording.path.name.endswith("-c1.wav") and recording.path.name.startswith("2025")


async def test_the_header_is_never_ahead_of_the_data_and_right_at_close(service: rec.Recordings) -> None:
    call, loop = FakeCall("alaw"), FakeLoop()
    recording = service.start(call)
    recording._loop, recording._t0, recording.delay_s = loop, 0.0, 0.0
    for step in range(1, 6):
        recording.caller_audio(b"\x2a" * 1000)
        loop.now = step * 0.125
        recording._queue(recording.take())
        await settle(service)
        left, right, _ = read_wav(recording.path)           # readable at any moment, while written
        assert len(left) == 1000 * step
        assert recording.path.stat().st_size == HEADER_BYTES + 4 * 1000 * step
    recording.close()
    await settle(service)
    data = recording.path.read_bytes()
    assert data[:HEADER_BYTES] == header(len(data) - HEADER_BYTES)
    assert read_wav(recording.path)[1] == [ALAW_TO_LINEAR[0xD5]] * 5000   # A-law silence padding


KILLED = """
import os, signal, sys
from pathlib import Path
from aribot.plugins.recording.wav import WavFile, stereo_pcm
wav = WavFile(Path(sys.argv[1]))
wav.open()
for n in range(10):
    wav.append(stereo_pcm(bytes([n + 1]) * 400, bytes([0x80 + n]) * 400, "ulaw"))
os.write(wav._fd, stereo_pcm(b"\\x66" * 400, b"\\x99" * 400, "ulaw"))   # killed between the data and its header
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_file_whose_writer_was_killed_is_readable_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    done = subprocess.run([sys.executable, "-c", KILLED, str(path)], timeout=30)
    assert done.returncode == -signal.SIGKILL
    left, right, _ = read_wav(path)                         # without repair: all but the last append
    assert len(left) == 4000 and left[:400] == samples(b"\x01" * 400) and right[-1] == ULAW_TO_LINEAR[0x89]
    assert repair(path) is True and repair(path) is False
    left, right, _ = read_wav(path)                         # repaired: everything written
    assert len(left) == 4400 and left[-400:] == samples(b"\x66" * 400) and right[-1] == ULAW_TO_LINEAR[0x99]
    (tmp_path / "other.wav").write_bytes(b"not a wav")
    assert repair(tmp_path / "other.wav") is False and (tmp_path / "other.wav").read_bytes() == b"not a wav"


async def test_start_up_repairs_what_a_crash_left(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "old.wav").write_bytes(header(0) + b"\x01\x02\x03\x04" * 10)
    recordings = rec.Recordings(SimpleNamespace(extensions={}), folder, "")
    try:
        assert recordings.prepare_folder() == 1
    finally:
        recordings.close()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert read_wav(folder / "old.wav")[2].nframes == 10


async def test_memory_is_bounded_when_the_disk_stalls_and_a_side_bursts(
    service: rec.Recordings, caplog: pytest.LogCaptureFixture
) -> None:
    call, loop = FakeCall(), FakeLoop()
    recording = service.start(call)
    recording._loop, recording._t0, recording.delay_s = loop, 0.0, 0.0
    await settle(service)
    stall = threading.Event()
    service.executor.submit(stall.wait)                     # the disk stalls: the writer waits
    caplog.set_level(logging.ERROR, "aribot.recording")
    for step in range(1, 200):                              # 100 s of audio, the caller 4x faster than real time
        recording.caller_audio(b"\x33" * 16000)
        recording.ai_audio(b"\x44" * 160)
        loop.now = step * rec.FLUSH_S
        recording._queue(recording.take())
        assert len(recording.pending) <= rec.MAX_PENDING
        assert len(recording.caller) <= rec.SLACK_S * 8000 and len(recording.ai) <= rec.SLACK_S * 8000
    assert recording.dropped_samples > 0 and recording.dropped_bytes > 0
    assert [r.getMessage() for r in caplog.records if "wait for the disk" in r.getMessage()].__len__() == 1
    stall.set()
    recording.close()
    await settle(service)
    left, _, _ = read_wav(recording.path)
    assert len(left) == rec.MAX_PENDING * rec.FLUSH_S * 8000   # what waited; the rest was dropped, counted


async def test_a_full_disk_is_one_line_and_the_call_goes_on(
    service: rec.Recordings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, loop = FakeCall(), FakeLoop()
    recording = service.start(call)
    recording._loop, recording._t0, recording.delay_s = loop, 0.0, 0.0
    loop.now = 1.0
    recording._queue(recording.take())
    await settle(service)
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        if fd == recording.file._fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    caplog.set_level(logging.ERROR, "aribot.recording")
    for step in range(2, 6):
        loop.now = float(step)
        recording._queue(recording.take())
        await settle(service)
    monkeypatch.setattr(os, "write", real_write)
    recording.close()
    await settle(service)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "the call goes on" in lines[0]
    assert read_wav(recording.path)[2].nframes == 8000   # what was written is kept


async def test_an_unwritable_folder_is_one_line_and_calls_are_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("x")
    settings = SimpleNamespace(get=lambda key: {"enabled": True, "path": str(tmp_path / "file" / "rec"),
                                                "consent": ""} if key == "recording" else None)
    app = SimpleNamespace(settings=settings, extensions={}, bus=None)
    caplog.set_level(logging.INFO, "aribot.recording")
    await plugin.startup(app)
    assert "recording" not in app.extensions
    (line,) = [r.getMessage() for r in caplog.records]
    assert "cannot use the folder" in line and "calls are not recorded in this run" in line


async def test_a_file_that_cannot_be_created_is_one_line(service: rec.Recordings,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    call = FakeCall()
    caplog.set_level(logging.ERROR, "aribot.recording")
    first = service.start(call)
    first.close()
    second = rec.CallRecording(service, FakeCall(), first.path)     # the same name: never overwritten
    second.begin()
    second.close()
    await settle(service)
    lines = [r.getMessage() for r in caplog.records if "cannot write the recording" in r.getMessage()]
    assert len(lines) == 1 and "File exists" in lines[0]


def test_the_consent_setting() -> None:
    assert plugin.consent_setting("") == ""
    assert plugin.consent_setting(" sound:call-recorded ") == "sound:call-recorded"
    assert plugin.consent_setting("This call is recorded: say stop to object.") == \
        "This call is recorded: say stop to object."
    for bad in ("sound:../etc/passwd", "sound:a.wav", "file:/tmp/consent.wav", "recording:x", "x" * 501, "a\x00b"):
        with pytest.raises(ValueError):
            plugin.consent_setting(bad)


async def test_the_consent_is_heard_before_listening_or_the_call_is_not_recorded(service: rec.Recordings) -> None:
    played: list[Any] = []

    class ConsentCall(FakeCall):
        channel = SimpleNamespace(channelvars={"ARIBOT_RECORD": ""})

        async def play_prompt(self, media: list[str], what: str) -> bool:
            played.append(media)
            return len(played) == 1

        async def ask_ai(self, instructions: str) -> asyncio.Future[str]:
            played.append(instructions)
            future = asyncio.get_running_loop().create_future()
            future.set_result("completed")
            return future

        async def wait_playout(self, limit: float) -> None:
            played.append("playout")

    service.consent = "sound:call-recorded"
    first = ConsentCall(call_id="a")
    await service.prelude(first)
    assert played == [["sound:call-recorded"]] and first.listeners
    second = ConsentCall(call_id="b")
    await service.prelude(second)                            # the prompt did not play: not recorded
    await settle(service)
    assert not second.listeners and not list(service.folder.glob("*-b.wav"))
    service.consent = "This call is recorded."
    third = ConsentCall(call_id="c")
    await service.prelude(third)
    assert "This call is recorded." in played[2] and played[3] == "playout" and third.listeners
    out = ConsentCall(call_id="d")
    out.channel = SimpleNamespace(channelvars={"ARIBOT_RECORD": "No"})
    await service.prelude(out)
    assert not out.listeners and len(played) == 4
    for call in (first, third):
        call.listeners[0].close()


async def test_the_history_points_at_the_file_and_deletes_it_with_the_record(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    await store.open()
    files = []
    for n, started in enumerate((1000.0, 2000.0, 3000.0)):
        cid = f"call-{n}"
        await store.record(ev.CallStarted(call_id=cid, ts=started, channel_id=cid))
        files.append(tmp_path / f"{cid}.wav")
        files[-1].write_bytes(header(0))
        store.set_recording(cid, str(files[-1]))
        await store.record(ev.CallEnded(call_id=cid, ts=started + 5, reason="caller_hangup", duration_s=5))
    await store.flush()
    assert (await store.get("call-0"))["recording"] == str(files[0])
    files[1].unlink()                                        # already gone: nothing to say
    assert await store._run(store._purge, 2500.0) == 2
    assert not files[0].exists() and files[2].exists() and await store.get("call-0") is None
    assert await store.delete("call-2") is True and not files[2].exists()
    assert await store.delete("call-2") is False
    await store.close()


async def test_a_version_2_history_gets_the_recording_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""CREATE TABLE calls (id TEXT PRIMARY KEY, caller_number TEXT NOT NULL DEFAULT '',
            caller_name TEXT NOT NULL DEFAULT '', extension TEXT NOT NULL DEFAULT '', started_at REAL NOT NULL,
            answered_at REAL, ended_at REAL, end_reason TEXT, duration_s REAL, mode TEXT, stats TEXT, cost REAL);
            CREATE TABLE turns (call_id TEXT, seq INTEGER, role TEXT, item_id TEXT, text TEXT, ts REAL,
            interrupted INTEGER); CREATE TABLE tools (call_id TEXT, seq INTEGER, tool TEXT, tool_call_id TEXT,
            arguments TEXT, result TEXT, error TEXT, duration_ms REAL, ts REAL);
            CREATE TABLE events (call_id TEXT, seq INTEGER, type TEXT, ts REAL, data TEXT);
            INSERT INTO calls (id, started_at) VALUES ('old', 1.0); PRAGMA user_version = 2;""")
    store = HistoryStore(path)
    await store.open()
    assert SCHEMA_VERSION >= 3 and (await store.get("old"))["recording"] is None
    await store.close()


async def test_the_route_serves_only_the_recorded_file_of_that_call(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "a.wav").write_bytes(header(8) + b"\x01\x00\x02\x00\x03\x00\x04\x00")
    (tmp_path / "secret.wav").write_bytes(header(0))
    records = {"a": {"recording": str(folder / "a.wav")}, "out": {"recording": str(tmp_path / "secret.wav")},
               "gone": {"recording": str(folder / "gone.wav")}, "none": {"recording": None}}

    class Store:
        async def get(self, call_id: str) -> Any:
            return records.get(call_id)

    owner = SimpleNamespace(app=SimpleNamespace(extensions={"recording": SimpleNamespace(folder=folder),
                                                            "history": Store()}))
    web = FastAPI()
    mount_recordings(web, owner)
    client = TestClient(web)
    got = client.get(recording_url("a"))
    assert got.status_code == 200 and got.headers["content-type"] == "audio/wav" and got.content[:4] == b"RIFF"
    part = client.get(recording_url("a"), headers={"range": "bytes=44-47"})
    assert part.status_code == 206 and part.content == b"\x01\x00\x02\x00"
    for call_id in ("out", "gone", "none", "unknown", "../secret"):
        assert client.get(recording_url(call_id)).status_code == 404, call_id
    owner.app.extensions.pop("recording")
    assert client.get(recording_url("a")).status_code == 404
    assert inside(str(folder / "x" / ".." / "a.wav"), str(folder)) and not inside(str(folder), str(folder))

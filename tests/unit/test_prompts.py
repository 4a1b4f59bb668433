"""Greeting files (core/prompts.py): read only from ``[call] greeting_dirs`` (no ``..`` or symbolic
link out of them), only regular files (a FIFO or a device is refused at once, never waited on), at
most ``greeting_max_bytes``, in a worker thread, and read again when the file changes; a settings
greeting outside the folders stops start-up with one line naming the setting."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from aribot.core import prompts
from aribot.core.g711 import AudioFileError
from aribot.core.prompts import greeting_folders, load_prompt, local_path, read_prompt
from aribot.core.settings import SettingsError, load_settings

ULAW = bytes([0xFF, 0x80, 0x00, 0xFE]) * 40
MAX = 10_000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    prompts._cache.clear()
    path = tmp_path / "prompts"
    path.mkdir()
    (path / "hello.ulaw").write_bytes(ULAW)
    return path


def read(path: Path | str, folders: list[Path | str], max_bytes: int = MAX) -> bytes:
    return read_prompt(str(path), "ulaw", [str(f) for f in folders], max_bytes)


def test_a_file_inside_a_listed_folder_is_read(folder: Path) -> None:
    assert read(folder / "hello.ulaw", [folder]) == ULAW
    assert read(folder / "sub" / ".." / "hello.ulaw", [folder]) == ULAW     # .. that stays inside


def outside_cases(folder: Path) -> list[tuple[str, list[Path], str]]:
    (folder.parent / "secret.ulaw").write_bytes(b"\x01" * 160)
    (folder / "link.ulaw").symlink_to(folder.parent / "secret.ulaw")
    (folder / "zero.ulaw").symlink_to("/dev/zero")
    (folder / "dir.ulaw").symlink_to(folder.parent)
    return [
        (str(folder / "hello.ulaw"), [], "greeting_dirs lists no folder"),
        (str(folder.parent / "secret.ulaw"), [folder], "is not inside [call] greeting_dirs"),
        (str(folder / ".." / "secret.ulaw"), [folder], "is not inside [call] greeting_dirs"),
        (str(folder / "link.ulaw"), [folder], "is not inside [call] greeting_dirs"),     # a link out
        (str(folder / "zero.ulaw"), [folder], "is not inside [call] greeting_dirs"),
        (str(folder / "dir.ulaw"), [folder], "is not inside [call] greeting_dirs"),
        ("/dev/zero", [folder], "is not inside [call] greeting_dirs"),
        (str(folder), [folder], "is not inside [call] greeting_dirs"),                    # the folder itself
        ("/dev/zero", [Path("/dev")], "is not a regular file"),                           # a device, listed
        (str(folder / "missing.ulaw"), [folder], "No such file"),
        (str(folder / "hello\0.ulaw"), [folder], "NUL byte"),
    ]


@pytest.mark.parametrize("case", range(11))
def test_what_is_not_a_listed_regular_file_is_refused(folder: Path, case: int) -> None:
    path, folders, needle = outside_cases(folder)[case]
    with pytest.raises(AudioFileError, match="prompt file .*" + needle.replace("[", r"\[").replace("]", r"\]")):
        read(path, folders)


def test_a_fifo_is_refused_at_once_not_waited_on(folder: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; aribot must not wait (nor its thread)."""
    fifo = folder / "fifo.ulaw"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            read(fifo, [folder])
        except BaseException as exc:   # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(2)
    if worker.is_alive():   # unblock the reader so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO greeting blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], AudioFileError)
    assert "is not a regular file" in str(outcome[0])


def test_a_file_over_the_size_cap_is_refused(folder: Path) -> None:
    big = folder / "big.ulaw"
    big.write_bytes(b"\xff" * (MAX + 1))
    with pytest.raises(AudioFileError, match=rf"has {MAX + 1} bytes; \[call\] greeting_max_bytes is {MAX}"):
        read(big, [folder])
    assert len(read(big, [folder], max_bytes=MAX + 1)) == MAX + 1


def test_a_changed_file_is_read_again_an_unchanged_one_is_not(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = folder / "hello.ulaw"
    parsed: list[int] = []
    real_parse = prompts.prompt_audio
    monkeypatch.setattr(prompts, "prompt_audio",
                        lambda data, p, fmt: parsed.append(len(data)) or real_parse(data, p, fmt))
    assert read(path, [folder]) == ULAW and read(path, [folder]) == ULAW
    assert parsed == [len(ULAW)]                                     # cached while unchanged
    stat = path.stat()
    path.write_bytes(b"\x00" * len(ULAW))                            # same size ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))   # ... a new mtime
    assert read(path, [folder]) == b"\x00" * len(ULAW)
    path.write_bytes(b"\x80" * 80)                                   # a new size, whatever the clock says
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert read(path, [folder]) == b"\x80" * 80
    replacement = folder / "new.ulaw"                                # replaced by rename: a new inode
    replacement.write_bytes(b"\x7f" * 80)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    replacement.replace(path)
    assert read(path, [folder]) == b"\x7f" * 80
    assert len(parsed) == 4


def test_loading_happens_in_a_worker_thread(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real_read = prompts.read_prompt
    monkeypatch.setattr(prompts, "read_prompt",
                        lambda *args: threads.append(threading.get_ident()) or real_read(*args))

    async def main() -> bytes:
        return await load_prompt(str(folder / "hello.ulaw"), "ulaw", [str(folder)], MAX)

    assert asyncio.run(main()) == ULAW
    assert threads and threads[0] != threading.get_ident()


@pytest.mark.parametrize(("media", "path"), [
    ("file:/srv/p/a.wav", "/srv/p/a.wav"), ("/srv/p/a.wav", "/srv/p/a.wav"), ("sound:hello", None), ("", None),
])
def test_local_path(media: str, path: str | None) -> None:
    assert local_path(media) == path


@pytest.mark.parametrize(("value", "ok"), [
    (["/srv/prompts"], True), ("/srv/a, /srv/b", True), ([], True),
    (["relative/prompts"], False), (["/"], False), (["/srv/.."], False), ([""], False),
])
def test_greeting_dirs_setting(value: object, ok: bool) -> None:
    if ok:
        assert greeting_folders(value) == ([v.strip() for v in value.split(",")] if isinstance(value, str) else value)
    else:
        with pytest.raises(ValueError):
            greeting_folders(value)


@pytest.mark.parametrize(("greeting", "dirs", "error"), [
    ("file:/srv/prompts/hello.wav", None, "call.greeting = 'file:/srv/prompts/hello.wav' is a file outside "
                                          "call.greeting_dirs = []"),
    ("/etc/passwd", '["/srv/prompts"]', "call.greeting = '/etc/passwd' is a file outside"),
    ("file:/srv/prompts/../../etc/passwd", '["/srv/prompts"]', "call.greeting = 'file:/srv/prompts/../../etc/passwd' "
                                                                "is a file outside"),
    ("file:/srv/prompts/hello.wav", '["/srv/prompts"]', None),
    ("sound:hello-world", None, None),
])
def test_a_settings_greeting_outside_the_folders_stops_start_up(
    greeting: str, dirs: str | None, error: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARIBOT_CALL__GREETING", greeting)
    if dirs is not None:
        monkeypatch.setenv("ARIBOT_CALL__GREETING_DIRS", dirs)
    if error is None:
        assert load_settings().call.greeting == greeting
    else:
        with pytest.raises(SettingsError, match=r"setting " + error.replace("[", r"\[").replace("]", r"\]")):
            load_settings()


def test_the_quickstarts_greeting_file_needs_its_folder_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INITIAL_GREETING_AUDIO_PATH", "/opt/quickstart/greeting.wav")
    with pytest.raises(SettingsError, match=r"setting call\.greeting = '/opt/quickstart/greeting\.wav' is a file"):
        load_settings()
    monkeypatch.setenv("ARIBOT_CALL__GREETING_DIRS", '["/opt/quickstart"]')
    assert load_settings().call.greeting == "/opt/quickstart/greeting.wav"

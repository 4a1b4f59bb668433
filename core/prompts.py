"""Prompt files aribot plays itself (``file:`` greetings): only from the folders listed in
``[call] greeting_dirs`` (symbolic links and ``..`` resolved first, so neither leaves them), only
regular files (a FIFO or a device is refused without blocking), at most ``[call]
greeting_max_bytes``, read in a worker thread so a slow disk never stalls the calls' audio, parsed by
core/g711.py, and cached until the file changes (device, inode, size and mtime are compared at every
use, so an edited greeting is played from the next call on)."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections import OrderedDict
from typing import Iterable

from aribot.core.g711 import AudioFileError, prompt_audio
from aribot.core.settings import str_list

CACHE_SIZE = 32  # decoded prompts kept (path and call format)
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

_cache: OrderedDict[tuple[str, str], tuple[tuple[int, int, int, int], bytes]] = OrderedDict()
_lock = threading.Lock()


def local_path(media: str) -> str | None:
    """The file a prompt aribot plays itself names (``file:/x.wav`` or ``/x.wav``), else None."""
    if media.startswith("file:"):
        return media[len("file:"):]
    return media if media.startswith("/") else None


def allowed_path(path: str, folders: Iterable[str]) -> str:
    """``path`` with every symbolic link and ``..`` resolved, if that is inside one of ``folders``
    (resolved the same way); else AudioFileError saying why."""
    roots = [os.path.realpath(str(folder)) for folder in folders]
    if not roots:
        raise AudioFileError(f"prompt file {path}: [call] greeting_dirs lists no folder, so aribot plays no "
                             "local files (list the folder, or use a sound: URI)")
    if "\0" in path:
        raise AudioFileError(f"prompt file {path!r}: the path holds a NUL byte")
    real = os.path.realpath(path)
    if not any(real != root and os.path.commonpath([real, root]) == root for root in roots):
        raise AudioFileError(f"prompt file {path} is not inside [call] greeting_dirs ({', '.join(roots)})")
    return real


def read_prompt(path: str, fmt: str, folders: Iterable[str], max_bytes: int) -> bytes:
    """Prompt file ``path`` as audio in the call's format (blocking: call it in a worker thread).
    Raises AudioFileError, and only that, naming the file and what is wrong."""
    real = allowed_path(path, folders)
    try:
        fd = os.open(real, OPEN_FLAGS)   # O_NONBLOCK: opening a FIFO does not wait for a writer
    except OSError as exc:
        raise AudioFileError(f"cannot read prompt file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AudioFileError(f"prompt file {path} is not a regular file")
        if info.st_size > max_bytes:
            raise AudioFileError(f"prompt file {path} has {info.st_size} bytes; [call] greeting_max_bytes is "
                                 f"{max_bytes}")
        stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with _lock:
            cached = _cache.get((real, fmt))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        chunks, left = [], max_bytes + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise AudioFileError(f"cannot read prompt file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:   # it grew while being read
        raise AudioFileError(f"prompt file {path} has more than {max_bytes} bytes ([call] greeting_max_bytes)")
    audio = prompt_audio(data, path, fmt)
    with _lock:
        _cache[(real, fmt)] = (stamp, audio)
        _cache.move_to_end((real, fmt))
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return audio


async def load_prompt(path: str, fmt: str, folders: Iterable[str], max_bytes: int) -> bytes:
    """``read_prompt`` in a worker thread: the event loop that paces every call's audio never waits
    for a disk."""
    return await asyncio.to_thread(read_prompt, path, fmt, list(folders), max_bytes)


def greeting_folders(value: object) -> list[str]:
    """The ``[call] greeting_dirs`` rule: a list of absolute folders, never ``/`` itself."""
    folders = str_list(value)
    for folder in folders:
        if not folder.startswith("/") or os.path.realpath(folder) == "/" or "\0" in folder:
            raise ValueError(folder)
    return folders

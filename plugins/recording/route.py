"""The dashboard's ``GET /recording/{call_id}``: a call's WAV, for the player on its history page.

Mounted on the dashboard's own server (plugins/ui_nicegui/server.py), so it sits behind the same
guards as every page (Host/Origin rules, the password when one is set). The file is found through
the call's history record, never from a path in the request, and only inside the recording folder;
Range requests are answered (a browser's player seeks with them).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any
from urllib.parse import quote

from fastapi.responses import FileResponse, PlainTextResponse, Response

log = logging.getLogger("aribot.recording")
URL = "/recording/{call_id}"


def recording_url(call_id: str) -> str:
    """Where the dashboard serves the call's recording."""
    return "/recording/" + quote(call_id, safe="")


def inside(path: str, folder: str) -> bool:
    """``path`` (resolved: symbolic links and ``..``) is a file inside ``folder``."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real != root and os.path.commonpath([real, root]) == root


def mount_recordings(web: Any, owner: Any) -> None:
    """Add ``/recording/{call_id}`` to the dashboard's FastAPI app; ``owner.app`` is the running App
    (read at each request: the recording service and the history may start or stop)."""
    async def recording(call_id: str) -> Response:
        app = getattr(owner, "app", None)
        service = app.extensions.get("recording") if app is not None else None
        store = app.extensions.get("history") if app is not None else None
        if service is None or store is None:
            return PlainTextResponse("no recordings: recording or the call history is off\n", status_code=404)
        record = await store.get(call_id)
        path = (record or {}).get("recording")
        if not path:
            return PlainTextResponse("no recording of this call\n", status_code=404)
        if not inside(path, str(service.folder)):
            log.warning("dashboard: the recording of call %s (%s) is outside [recording] path %s; not served",
                        call_id[:64], path, service.folder)
            return PlainTextResponse("no recording of this call\n", status_code=404)
        if not await _is_file(path):
            log.warning("dashboard: the recording of call %s is missing (%s); deleted by hand?", call_id[:64], path)
            return PlainTextResponse("the recording file is missing\n", status_code=404)
        return FileResponse(path, media_type="audio/wav", filename=os.path.basename(path),
                            content_disposition_type="inline", headers={"cache-control": "no-store"})

    web.add_api_route(URL, recording, methods=["GET"], include_in_schema=False)


async def _is_file(path: str) -> bool:
    return await asyncio.to_thread(os.path.isfile, path)

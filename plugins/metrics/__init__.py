"""Prometheus metrics plugin: ``GET /metrics`` on aribot's HTTP API (the Prometheus text format)
with live calls, calls by end reason, turn latency, pacing error, dropped RTP, Realtime sessions,
tools and tokens (docs/metrics.md). ``[plugins] disabled = ["metrics"]`` switches it off.

Each App has its own registry (``app.extensions["metrics"].registry``), never the process-wide
default one, so several aribots in one process never mix their figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aribot import hookimpl
from aribot.plugins.metrics.collector import AribotMetrics

log = logging.getLogger("aribot.metrics")


@dataclass
class Slot:
    """Where ``/metrics`` finds this App's metrics: filled by ``startup``, emptied by ``shutdown``."""

    metrics: AribotMetrics | None = None


SLOT = web.AppKey("aribot_metrics", Slot)


@hookimpl
def register_routes(app):
    app[SLOT] = Slot()
    app.router.add_get("/metrics", serve_metrics)


async def serve_metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this App's registry."""
    metrics = request.app[SLOT].metrics
    if metrics is None:
        return web.Response(status=503, text="metrics are not collected (the metrics plugin is stopped)\n")
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


@hookimpl
def startup(app):
    metrics = AribotMetrics(app)
    metrics.start()
    app.extensions["metrics"] = metrics
    web_app = getattr(getattr(app, "http", None), "web", None)
    if web_app is not None and SLOT in web_app:
        web_app[SLOT].metrics = metrics
    else:  # enabled at run time: aiohttp cannot add routes to a running application
        log.warning("metrics are collected, but /metrics is served only after a restart with the plugin enabled")


@hookimpl
def shutdown(app):
    metrics = app.extensions.pop("metrics", None)
    if metrics is None:
        return
    metrics.stop()
    web_app = getattr(getattr(app, "http", None), "web", None)
    if web_app is not None and SLOT in web_app:
        web_app[SLOT].metrics = None

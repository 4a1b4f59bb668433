"""Per-call cost plugin: what each call costs with its AI service, by the ``[cost]`` price table.

- ``openai_realtime`` and ``azure``: the tokens of every Realtime ``response.done`` usage block,
  by kind (text/audio × input/cached input/output; cached tokens are priced at the cached rate
  instead of the input rate).
- ``gpt_live``: active session seconds (cumulative ``UsageUpdated.seconds``) at a price per minute,
  billed per second, plus the delegation model's tokens (``UsageUpdated.tokens``).
- ``local``: free. Any other backend: ``other_per_minute`` for the session seconds it reports.

Each change is a ``CostUpdated`` event on the bus (the call history stores the latest, /metrics
counts it). A call whose cost reaches ``[call] max_cost`` is ended once: the AI says a short
goodbye (``max_cost_goodbye``), heard in full, then the call ends with reason ``max_cost``.
Transcription (``[openai] transcription_model``) and image tokens are not counted.
``[plugins] disabled = ["cost"]`` switches it off (and with it ``max_cost``).
"""

from __future__ import annotations

from aribot import hookimpl
from aribot.plugins.cost.meter import CallCost, CostMeter
from aribot.plugins.cost.prices import PRICE_SETTINGS, Prices, UsageError, token_counts

__all__ = ["CallCost", "CostMeter", "Prices", "UsageError", "token_counts"]


@hookimpl
def register_settings(register):
    for setting in PRICE_SETTINGS:
        register(setting)


@hookimpl
def startup(app):
    meter = CostMeter(app, Prices.from_settings(app.settings.cost))
    meter.start()
    app.extensions["cost"] = meter


@hookimpl
def shutdown(app):
    meter = app.extensions.pop("cost", None)
    if meter is not None:
        meter.stop()

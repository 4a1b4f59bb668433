"""aribot's core (``aribot.core``): settings, plugin manager, event bus, ARI/RTP/Realtime adapters,
calls, HTTP API, CLI. Internal: plugins use the public API in ``aribot`` itself; what is here may
change between releases."""

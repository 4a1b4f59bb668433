"""aribot core: settings, plugins, event bus, ARI/RTP/Realtime adapters, calls, HTTP API, CLI."""

from core.hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
__version__ = "0.1.0"

"""aribot's own OpenAI Realtime (GA) server engine.

The local voice backend runs it with a ``Script`` whose turns are computed from the caller's
audio; the test suite runs it as a strict fake with scripted turns and every sent frame checked
against the openai SDK's models (``tests.fake_realtime``). One engine, so the backend the demo
uses speaks exactly the protocol the suite holds the core to.
"""

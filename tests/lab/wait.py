"""Waiting in tests: for a condition to hold, never for a fixed time. The timeout only stops a
test that would hang; it is never the thing a test asserts."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(condition: Callable[[], T | Awaitable[T]], what: str, timeout: float = 10.0,
                interval: float = 0.01) -> T:
    """Poll ``condition()`` (sync or async) until it returns something truthy, and return that;
    after ``timeout`` seconds fail with ``what`` did not happen."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {timeout:g} s") from None

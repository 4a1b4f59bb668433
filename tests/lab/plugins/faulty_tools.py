"""Tools that go wrong: one raises, one never answers, two are slow."""

import asyncio

import aribot


def raises() -> str:
    """Always fails."""
    raise RuntimeError("the order system is down")


async def hangs() -> str:
    """Never answers."""
    await asyncio.sleep(60)
    return "too late"


async def slow_lookup(order_id: str) -> dict:
    """Looks something up slowly.

    Args:
        order_id: the order number
    """
    await asyncio.sleep(1.2)
    return {"order_id": order_id, "status": "shipped"}


async def slower_lookup(order_id: str) -> dict:
    """Looks something up very slowly.

    Args:
        order_id: the order number
    """
    await asyncio.sleep(2.5)
    return {"order_id": order_id, "status": "delivered"}


@aribot.hookimpl
def register_tools(register):
    for function in (raises, hangs, slow_lookup, slower_lookup):
        register(function)

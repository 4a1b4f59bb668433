"""A tool written as a plain function that blocks: a synchronous HTTP client or database driver
that hangs longer than the tool's timeout."""

import time

import aribot


def blocking_lookup(order_id: str) -> dict:
    """Looks an order up with a blocking client.

    Args:
        order_id: the order number
    """
    time.sleep(1.5)
    return {"order_id": order_id, "status": "shipped"}


@aribot.hookimpl
def register_tools(register):
    register(blocking_lookup)

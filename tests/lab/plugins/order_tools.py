"""A tool a shop would write: look an order up."""

import aribot


def lookup_order(order_id: str) -> dict:
    """Look up the status of an order by its id."""
    return {"order_id": order_id, "status": "shipped"}


@aribot.hookimpl
def register_tools(register):
    register(lookup_order)

"""Example aribot tools plugin: two typed functions become tools the AI can call.

Install it next to aribot (``pip install ./examples/aribot-example-orders``) and the AI can use
``lookup_order`` and ``opening_hours`` on the next call; ``[plugins] disabled = ["example_orders"]``
removes them again.
"""

from __future__ import annotations

from typing import Literal

import aribot

ORDERS = {
    "1001": {"status": "shipped", "carrier": "DHL", "expected": "tomorrow"},
    "1002": {"status": "being packed", "expected": "in three days"},
    "1003": {"status": "delivered", "delivered": "last Monday"},
}
HOURS = {"weekday": "9:00 to 18:00", "saturday": "10:00 to 14:00", "sunday": "closed"}


def lookup_order(order_id: str, ctx: aribot.ToolContext | None = None) -> dict:
    """Look up the status of a customer's order.

    Args:
        order_id: the order number the caller gives, digits only
    """
    order = ORDERS.get(order_id.strip())
    if order is None:
        raise LookupError(f"there is no order {order_id}; ask the caller to check the number")
    return {"order_id": order_id, **order, "asked_by": ctx.caller_number if ctx else ""}


def opening_hours(day: Literal["weekday", "saturday", "sunday"] = "weekday") -> str:
    """The shop's opening hours.

    Args:
        day: which kind of day the caller asks about
    """
    return f"On a {day} the shop is open {HOURS[day]}." if HOURS[day] != "closed" else f"The shop is closed on {day}s."


@aribot.hookimpl
def register_tools(register):
    register(lookup_order)
    register(opening_hours)

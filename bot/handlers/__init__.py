"""The routers in match order: staff routers before the customer's (staff get the staff
/orders), the fallback router last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    admin,
    again,
    delivery,
    fallback,
    fulfilment,
    lookup,
    merchant,
    orders,
    payments,
    reports,
    review,
    shop,
)

ROUTERS = (
    payments,
    merchant,
    admin,
    review,
    fulfilment,
    delivery,
    lookup,
    reports,
    shop,
    orders,
    again,
    fallback,
)


def get_routers() -> list[Router]:
    return [m.create_router() for m in ROUTERS]

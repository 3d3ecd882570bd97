"""The routers in match order: staff routers before the customer's (staff get the staff
/orders), the fallback router last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import (
    admin,
    delivery,
    fallback,
    lookup,
    merchant,
    orders,
    payments,
    reports,
    shop,
)


def get_routers() -> list[Router]:
    routers = (payments, merchant, admin, delivery, lookup, reports, shop, orders, fallback)
    return [m.create_router() for m in routers]
